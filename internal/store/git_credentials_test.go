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
