package config

import "testing"

func TestWebhookAllowPrivate(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true, "TRUE": true} {
		c, err := FromEnv(func(k string) string {
			if k == "UPANEL_WEBHOOK_ALLOW_PRIVATE" {
				return v
			}
			return ""
		})
		if err != nil || c.WebhookAllowPrivate != want {
			t.Errorf("UPANEL_WEBHOOK_ALLOW_PRIVATE=%q: %v, %v; want %v", v, c.WebhookAllowPrivate, err, want)
		}
	}
	if _, err := FromEnv(func(k string) string {
		if k == "UPANEL_WEBHOOK_ALLOW_PRIVATE" {
			return "yes please"
		}
		return ""
	}); err == nil {
		t.Error("a malformed UPANEL_WEBHOOK_ALLOW_PRIVATE was accepted")
	}
}
