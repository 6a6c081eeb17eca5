package store_test

import (
	"context"
	"testing"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestMigrateIsIdempotentAndCurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		applied, err := db.Migrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 0 {
			t.Fatalf("second migrate applied %v", applied)
		}
		ok, err := db.SchemaCurrent(ctx)
		if err != nil || !ok {
			t.Fatalf("SchemaCurrent = %v, %v", ok, err)
		}
		st, err := db.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st {
			if m.AppliedAt == nil {
				t.Errorf("%s not applied", m.Name)
			}
		}
	})
}
