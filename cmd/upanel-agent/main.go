// Command upanel-agent runs on every server UPanel manages: it reports to the
// panel and answers its calls. The panel installs and configures it over SSH.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"upanel/internal/agent"
	"upanel/internal/wire"
)

// version is set at release time with -ldflags "-X main.version=...";
// otherwise it is the commit the binary was built from, so the panel can tell
// an agent that needs an upgrade.
var version = "dev"

func agentVersion() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) < 12 {
		return version
	}
	if dirty {
		return "dev-" + rev[:12] + "+dirty"
	}
	return "dev-" + rev[:12]
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "upanel-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upanel-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/upanel-agent/config.json", "config file written by the panel")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	version := agentVersion()
	if *showVersion {
		fmt.Fprintf(stdout, "upanel-agent %s (protocol %d)\n", version, wire.ProtocolVersion)
		return nil
	}
	// The agent's heap is small and steady: collecting at 50% growth instead
	// of 100% keeps it near 10 MB resident for a few extra milliseconds of
	// CPU an hour. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, log, version)
	if err != nil {
		return err
	}
	log.Info("upanel-agent starting", "version", version, "server_id", cfg.ServerID, "panel", cfg.PanelURL)
	return a.Run(ctx)
}
