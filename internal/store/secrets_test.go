package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

const canary = "CANARY-7f3a9c-secret-value"

func TestCanaryInEverySecretColumnIsNeverStoredInPlainText(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			env := storetest.New(t, d)
			db, url := env.DB, env.URL
			ids := storetest.SecretRows(t, db, canary)
			storetest.CheckSecrets(t, db, ids, canary)
			storetest.AssertNotStored(t, db, url, canary)
			// Control: the same scan does find a plain value in a plain column,
			// so the assertion above can fail.
			const control = "CONTROL-plain-4d1e0b"
			storetest.Exec(t, db, "UPDATE servers SET name = ? WHERE id = ?", control, ids["servers"])
			found := false
			for _, data := range storetest.StoredBytes(t, db, url) {
				found = found || strings.Contains(string(data), control)
			}
			if !found {
				t.Fatal("the stored-bytes scan cannot see a plain value: the canary check proves nothing")
			}

			// Rotate to a new key, keeping the old one to read with.
			old := db.Keyring()
			k := storetest.Key(t)
			db.SetKeyring(storetest.Keyring(t, k, env.Key))
			if err := db.RegisterActiveKey(ctx); err != nil {
				t.Fatal(err)
			}
			n, err := db.ReencryptAll(ctx, 3, nil)
			if err != nil || n != len(store.SecretColumns()) {
				t.Fatalf("ReencryptAll = %d, %v; want %d", n, err, len(store.SecretColumns()))
			}
			usage, _ := db.KeyUsage(ctx)
			if usage[k.ID()] != len(store.SecretColumns()) || len(usage) != 1 {
				t.Fatalf("after rotation key usage = %v", usage)
			}
			storetest.CheckSecrets(t, db, ids, canary)
			storetest.AssertNotStored(t, db, url, canary)
			retired, err := db.RetireUnusedKeys(ctx)
			if err != nil || len(retired) != 1 || retired[0] != old.ActiveID() {
				t.Fatalf("RetireUnusedKeys = %v, %v", retired, err)
			}
			// Only the new key now: everything still reads.
			db.SetKeyring(storetest.Keyring(t, k))
			if err := db.CheckKeys(ctx); err != nil {
				t.Fatalf("CheckKeys with the new key alone: %v", err)
			}
			storetest.CheckSecrets(t, db, ids, canary)
		})
	}
}

func TestReencryptResumesAfterInterruption(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) { testReencryptResumes(t, storetest.New(t, d)) })
	}
}

func testReencryptResumes(t *testing.T, env storetest.Env) {
	db := env.DB
	{
		ctx := context.Background()
		// Several rows per column, so batches of one stop midway.
		var all []map[string]string
		for range 3 {
			all = append(all, storetest.SecretRows(t, db, canary))
		}
		k := storetest.Key(t)
		db.SetKeyring(storetest.Keyring(t, k, env.Key))
		if err := db.RegisterActiveKey(ctx); err != nil {
			t.Fatal(err)
		}
		crashCtx, crash := context.WithCancel(ctx)
		batches := 0
		_, err := db.ReencryptAll(crashCtx, 1, func(store.SecretColumn, int) {
			if batches++; batches == 5 {
				crash() // the process "dies" after five committed batches
			}
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted ReencryptAll err = %v", err)
		}
		usage, _ := db.KeyUsage(ctx)
		if usage[k.ID()] != 5 {
			t.Fatalf("after the crash, %d rows use the new key, want 5 (usage %v)", usage[k.ID()], usage)
		}
		for _, ids := range all {
			storetest.CheckSecrets(t, db, ids, canary) // mixed keys still read
		}
		n, err := db.ReencryptAll(ctx, 1, nil)
		if err != nil || n != 3*len(store.SecretColumns())-5 {
			t.Fatalf("resumed ReencryptAll = %d, %v", n, err)
		}
		usage, _ = db.KeyUsage(ctx)
		if len(usage) != 1 {
			t.Fatalf("after resuming, usage = %v", usage)
		}
	}
}

func TestCheckKeysRefusesMissingOrWrongKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		storetest.SecretRows(t, db, canary)
		good := db.Keyring()
		other := storetest.Keyring(t)
		db.SetKeyring(other)
		err := db.CheckKeys(ctx)
		if !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), good.ActiveID()) {
			t.Fatalf("CheckKeys with another key = %v; want a conflict naming key %s", err, good.ActiveID())
		}
		db.SetKeyring(good)
		if err := db.CheckKeys(ctx); err != nil {
			t.Fatalf("CheckKeys with the right key: %v", err)
		}
	})
}

func TestSecretColumnGuard(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	ctx := context.Background()
	bad := store.SecretColumn{Table: "users", Column: "email"}
	err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetSecret(ctx, bad, "x", []byte("y")) })
	if err == nil {
		t.Fatal("SetSecret wrote a column that is not a secret column")
	}
	if _, _, err := db.GetSecret(ctx, store.SecretColumns()[0], store.NewID()); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("GetSecret of a missing row: %v", err)
	}
}
