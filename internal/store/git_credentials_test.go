package store_test

import (
	"context"
	"strings"
	"testing"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestGitCredentialsStore(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var c *store.GitCredential
		err := db.InTx(ctx, func(tx *store.Tx) error {
			var err error
			c, err = tx.CreateGitCredential(ctx, store.NewGitCredential{Name: "deploy key", Type: store.GitSSHKey,
				Secret: store.GitSecret{PrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"}, PublicKey: "ssh-ed25519 AAAA k",
				KnownHosts: "github.com ssh-ed25519 AAAA"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.Type != store.GitSSHKey || c.PublicKey != "ssh-ed25519 AAAA k" || c.KnownHosts != "github.com ssh-ed25519 AAAA" || c.Apps != 0 {
			t.Fatalf("created %+v", c)
		}
		sec, err := db.GitCredentialSecret(ctx, c.ID)
		if err != nil || !strings.HasPrefix(sec.PrivateKey, "-----BEGIN OPENSSH") {
			t.Fatalf("secret: %+v %v", sec, err)
		}
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.UpdateGitCredential(ctx, c.ID, "renamed", ""); err != nil {
				return err
			}
			return tx.SetGitCredentialSecret(ctx, c.ID, store.GitSecret{PrivateKey: "new"}, "ssh-ed25519 BBBB k")
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.GetGitCredential(ctx, c.ID)
		if err != nil || got.Name != "renamed" || got.KnownHosts != "" || got.PublicKey != "ssh-ed25519 BBBB k" {
			t.Fatalf("after update: %+v %v", got, err)
		}
		if sec, _ := db.GitCredentialSecret(ctx, c.ID); sec.PrivateKey != "new" {
			t.Fatalf("replaced secret: %+v", sec)
		}
		list, err := db.ListGitCredentials(ctx)
		if err != nil || len(list) != 1 || list[0].ID != c.ID {
			t.Fatalf("list: %v %v", list, err)
		}
		// The https host of a token credential (026): written, read, changed
		// and cleared; an ssh_key credential has none.
		if got.Host != "" {
			t.Fatalf("an ssh_key credential has the host %q", got.Host)
		}
		var tok *store.GitCredential
		err = db.InTx(ctx, func(tx *store.Tx) error {
			var err error
			tok, err = tx.CreateGitCredential(ctx, store.NewGitCredential{Name: "token", Type: store.GitToken,
				Secret: store.GitSecret{Secret: "t"}, Host: "git.example.test:8443"})
			return err
		})
		if err != nil || tok.Host != "git.example.test:8443" {
			t.Fatalf("token with a host: %+v %v", tok, err)
		}
		for _, h := range []string{"github.com", ""} {
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetGitCredentialHost(ctx, tok.ID, h) }); err != nil {
				t.Fatal(err)
			}
			if got, err := db.GetGitCredential(ctx, tok.ID); err != nil || got.Host != h {
				t.Fatalf("host set to %q: %+v %v", h, got, err)
			}
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetGitCredentialHost(ctx, store.NewID(), "x.test") }); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("host of nothing: %v", err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteGitCredential(ctx, tok.ID) }); err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteGitCredential(ctx, c.ID) }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GitCredentialSecret(ctx, c.ID); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("secret of a deleted credential: %v", err)
		}
		if _, err := db.GetGitCredential(ctx, c.ID); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("deleted credential: %v", err)
		}
	})
}
