package main

import (
	"context"
	"flag"

	"upanel/internal/config"
	"upanel/internal/panel"
)

func cmdServe(ctx context.Context, e *env, args []string) error {
	cfg, help, err := loadConfig(e, "serve", "upanel serve [flags]", args, func(c *config.Config, fs *flag.FlagSet) { c.ServeFlags(fs) })
	if help || err != nil {
		return err
	}
	return panel.Serve(ctx, cfg, e.logger(cfg), e.redactor, e.panel)
}
