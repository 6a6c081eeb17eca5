package store_test

import (
	"context"
	"os"
	"testing"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestScratchDump(t *testing.T) {
	for _, d := range storetest.Dialects {
		u := storetest.URL(t, d)
		db := storetest.OpenURL(t, u, nil)
		if _, err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, m := range store.Migrations() {
			s, _ := db.RenderMigration(m)
			os.WriteFile("/tmp/scratch/"+d+"_"+m.Name+".sql", []byte(s), 0o644)
		}
		os.WriteFile("/tmp/scratch/"+d+".url", []byte(u), 0o644)
	}
	t.Skip("keep")
}
