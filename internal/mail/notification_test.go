package mail_test

import (
	"mime"
	"strings"
	"testing"
	"unicode/utf8"

	"upanel/internal/mail"
)

const settingsLink = "https://panel.example.test/notifications/settings"

func item(title, link string) mail.NotificationItem {
	return mail.NotificationItem{Title: title, Message: "It stopped reporting.", Link: link, When: "2025-03-11 04:17 IST"}
}

// subjectOf decodes the Subject header of a built message.
func subjectOf(t *testing.T, p parsed) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNotificationEmailSingle(t *testing.T) {
	m, err := mail.NotificationEmail("ana@example.test", mail.Notifications{Settings: settingsLink,
		Items: []mail.NotificationItem{item("Server web-1 is offline", "https://panel.example.test/servers/01J0SRV")}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != mail.KindNotification || m.To != "ana@example.test" || m.Subject != "[UPanel] Server web-1 is offline" {
		t.Fatalf("mail = %+v", m)
	}
	for _, part := range []string{m.Text, m.HTML} {
		for _, want := range []string{"Server web-1 is offline", "It stopped reporting.", "2025-03-11 04:17 IST", "https://panel.example.test/servers/01J0SRV", settingsLink} {
			if !strings.Contains(part, want) {
				t.Errorf("a part lacks %q:\n%s", want, part)
			}
		}
	}
	if !strings.Contains(m.HTML, `href="https://panel.example.test/servers/01J0SRV"`) || !strings.Contains(m.HTML, "<title>[UPanel] Server web-1 is offline</title>") {
		t.Errorf("HTML:\n%s", m.HTML)
	}
	raw, err := mail.Message{From: from, To: ana, Subject: m.Subject, Text: m.Text, HTML: m.HTML}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if p := parse(t, raw); p.contentType != "multipart/alternative" || p.text == "" || p.html == "" {
		t.Fatalf("built message: %+v", p)
	}
}

func TestNotificationEmailDigest(t *testing.T) {
	d := mail.Notifications{Settings: settingsLink}
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		d.Items = append(d.Items, item("Server "+name+" is offline", "https://panel.example.test/servers/"+name))
	}
	m, err := mail.NotificationEmail("ana@example.test", d)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "[UPanel] 3 notifications: Server web-1 is offline and more" {
		t.Fatalf("subject %q", m.Subject)
	}
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		link := "https://panel.example.test/servers/" + name
		if !strings.Contains(m.Text, "* Server "+name+" is offline (2025-03-11 04:17 IST)") || !strings.Contains(m.Text, "  "+link+"\n") {
			t.Errorf("text lacks %s:\n%s", name, m.Text)
		}
		if !strings.Contains(m.HTML, `<a href="`+link+`" style="color:#1f6feb;">Server `+name+` is offline</a>`) {
			t.Errorf("HTML lacks the link to %s:\n%s", name, m.HTML)
		}
	}
	if !strings.Contains(m.Text, "3 things happened") || !strings.Contains(m.HTML, "3 things happened") {
		t.Errorf("no count in the bodies")
	}
}

// TestNotificationEmailContentSafety: whatever a title or message holds, the
// subject stays one line, markup is escaped in HTML, and a title too long
// for a subject is cut.
func TestNotificationEmailContentSafety(t *testing.T) {
	evil := mail.NotificationItem{
		Title:   "Server <script>alert(1)</script>\r\nBcc: eve@example.test\x00\x1b[31m\u0085next\u2028line\u2029para is offline",
		Message: `<img src=x onerror="alert(1)"> & "quotes"` + "\nline two",
		Link:    "https://panel.example.test/servers/01J0SRV?a=1&b=<2>",
		When:    "<i>now</i>",
	}
	m, err := mail.NotificationEmail("ana@example.test", mail.Notifications{Settings: settingsLink, Items: []mail.NotificationItem{evil}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Subject {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			t.Fatalf("subject %q carries %U", m.Subject, r)
		}
	}
	if !strings.HasPrefix(m.Subject, "[UPanel] Server <script>alert(1)</script>") || !strings.HasSuffix(m.Subject, "is offline") {
		t.Errorf("subject %q", m.Subject)
	}
	for _, bad := range []string{"<script>", "<img", "<i>now", `onerror="`} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("HTML carries %q unescaped:\n%s", bad, m.HTML)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; &#34;quotes&#34;", "&lt;i&gt;now&lt;/i&gt;"} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("HTML lacks %q:\n%s", want, m.HTML)
		}
	}
	// The plain-text part is plain text: what was written, unescaped.
	if !strings.Contains(m.Text, `<img src=x onerror="alert(1)"> & "quotes"`+"\nline two") {
		t.Errorf("text:\n%s", m.Text)
	}
	raw, err := mail.Message{From: from, To: ana, Subject: m.Subject, Text: m.Text, HTML: m.HTML}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	if len(p.header["Bcc"]) != 0 || strings.Contains(subjectOf(t, p), "\n") {
		t.Fatalf("headers %v", p.header)
	}

	// Long titles: the subject is cut, single and digest, within the outbox's
	// 255 characters.
	long := "Server " + strings.Repeat("ünïcode-", 60) + " is offline"
	for _, n := range []int{1, 50} {
		d := mail.Notifications{Settings: settingsLink}
		for range n {
			d.Items = append(d.Items, item(long, "https://panel.example.test/servers/x"))
		}
		m, err := mail.NotificationEmail("ana@example.test", d)
		if err != nil {
			t.Fatal(err)
		}
		if c := utf8.RuneCountInString(m.Subject); c > 255 || !strings.Contains(m.Subject, "…") {
			t.Errorf("%d items: subject of %d characters: %q", n, c, m.Subject)
		}
		if strings.Contains(m.Text, long) {
			t.Errorf("%d items: the title was not cut in the text", n)
		}
	}
}

func TestNotificationEmailRefusesBadInput(t *testing.T) {
	ok := item("Server web-1 is offline", "https://panel.example.test/servers/1")
	if _, err := mail.NotificationEmail("ana@example.test", mail.Notifications{Settings: settingsLink}); err == nil {
		t.Error("a mail without notifications was rendered")
	}
	for _, link := range []string{
		"javascript:alert(1)",
		"JavaScript:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"vbscript:msgbox(1)",
		"mailto:eve@example.test",
		"ftp://panel.example.test/servers/1",
		"file:///etc/passwd",
		"/servers/1",
		"//evil.example/servers/1",
		"https:///servers/1",
		"https://user:pass@panel.example.test/servers/1",
		"",
	} {
		bad := ok
		bad.Link = link
		if _, err := mail.NotificationEmail("ana@example.test", mail.Notifications{Settings: settingsLink, Items: []mail.NotificationItem{ok, bad}}); err == nil {
			t.Errorf("item link %q accepted", link)
		}
		if _, err := mail.NotificationEmail("ana@example.test", mail.Notifications{Settings: link, Items: []mail.NotificationItem{ok}}); err == nil {
			t.Errorf("settings link %q accepted", link)
		}
	}
	for _, to := range []string{"ana@example.test\r\nBcc: eve@example.test", "not an address", "josé@example.test"} {
		if _, err := mail.NotificationEmail(to, mail.Notifications{Settings: settingsLink, Items: []mail.NotificationItem{ok}}); err == nil {
			t.Errorf("recipient %q accepted", to)
		}
	}
	if _, err := mail.NotificationEmail("ana@example.test", mail.Notifications{Settings: "http://panel.example.test/notifications/settings",
		Items: []mail.NotificationItem{item("x", "http://panel.example.test/servers/1")}}); err != nil {
		t.Errorf("plain http (UPANEL_URL on a LAN): %v", err)
	}
}
