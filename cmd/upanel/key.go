package main

import (
	"context"
	"flag"
	"fmt"

	"upanel/internal/config"
	"upanel/internal/panel"
	"upanel/internal/secret"
)

func cmdKeyGenerate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("key generate", flag.ContinueOnError)
	if help, err := parseFlags(e, fs, "upanel key generate", args); help || err != nil {
		return err
	}
	k, err := secret.GenerateKey()
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, k.Encode())
	return nil
}

func cmdKeyRotate(ctx context.Context, e *env, args []string) error {
	batch := 500
	cfg, help, err := loadConfig(e, "key rotate", "upanel key rotate [flags]", args, func(c *config.Config, fs *flag.FlagSet) {
		c.StorageFlags(fs)
		fs.IntVar(&batch, "batch", batch, "rows re-encrypted per transaction")
	})
	if help || err != nil {
		return err
	}
	if batch < 1 || batch > 100000 {
		return usageError{"--batch must be 1-100000"}
	}
	return panel.RotateKeys(ctx, cfg, e.logger(cfg), e.redactor, e.stdout, batch)
}
