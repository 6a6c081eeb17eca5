package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"upanel/internal/config"
	"upanel/internal/store"
)

func storageFlags(c *config.Config, fs *flag.FlagSet) { c.StorageFlags(fs) }

func openPlain(ctx context.Context, e *env, cfg config.Config) (*store.DB, error) {
	if err := cfg.EnsureDataDir(); err != nil {
		return nil, err
	}
	return store.Open(ctx, cfg.DatabaseURL, store.Options{Logger: e.logger(cfg)})
}

func cmdMigrateUp(ctx context.Context, e *env, args []string) error {
	cfg, help, err := loadConfig(e, "migrate up", "upanel migrate up [flags]", args, storageFlags)
	if help || err != nil {
		return err
	}
	db, err := openPlain(ctx, e, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	for _, name := range applied {
		fmt.Fprintln(e.stdout, "applied", name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "database is at version %d (%s)\n", store.LatestVersion(), db.Dialect())
	return nil
}

func cmdMigrateStatus(ctx context.Context, e *env, args []string) error {
	cfg, help, err := loadConfig(e, "migrate status", "upanel migrate status [flags]", args, storageFlags)
	if help || err != nil {
		return err
	}
	db, err := openPlain(ctx, e, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := db.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
	pending := 0
	for _, m := range st {
		at := "pending"
		if m.AppliedAt != nil {
			at = m.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		} else {
			pending++
		}
		fmt.Fprintf(tw, "%03d\t%s\t%s\n", m.Version, m.Name, at)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d pending\n", pending)
	return nil
}
