package main

import (
	"context"
	"fmt"

	"upanel/internal/apperr"
	"upanel/internal/store"
)

// cmdAuditVerify walks the activity log's hash chain and reports the first
// broken link. It only reads, so it can run beside serve; it exits non-zero
// when the chain is broken so that cron or monitoring can alert on it.
func cmdAuditVerify(ctx context.Context, e *env, args []string) error {
	cfg, help, err := loadConfig(e, "audit verify", "upanel audit verify [flags]", args, storageFlags)
	if help || err != nil {
		return err
	}
	db, err := openPlain(ctx, e, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	// A database at another version may lack the chain's columns; say so
	// instead of failing on a missing column.
	if ok, err := db.SchemaCurrent(ctx); err != nil {
		return err
	} else if !ok {
		return apperr.New(apperr.Conflict, "the database is not at schema version %d: run upanel migrate up (or the matching upanel)", store.LatestVersion())
	}
	rep, err := db.VerifyActivityChain(ctx)
	if err != nil {
		return err
	}
	if b := rep.Break; b != nil {
		fmt.Fprintf(e.stdout, "activity log broken at %s: %s\n", b.ID, b.Reason)
		fmt.Fprintf(e.stdout, "%d rows before it verified\n", rep.Rows)
		return fmt.Errorf("activity log broken at %s (%s)", b.ID, b.Kind)
	}
	fmt.Fprintf(e.stdout, "activity log intact: %d rows\n", rep.Rows)
	return nil
}
