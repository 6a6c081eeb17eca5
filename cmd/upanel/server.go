package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/config"
	"upanel/internal/fleet"
	"upanel/internal/panel"
	"upanel/internal/store"
)

// fleet opens the servers service for a command.
func (e *env) fleet(ctx context.Context, cfg config.Config) (*fleet.Service, *store.DB, func(), error) {
	return panel.Fleet(ctx, cfg, e.logger(cfg), e.redactor)
}

// cliActor is who the server commands act as, and how they came in. As with
// user create, token create and user reset-2fa, the command line is the
// system acting, not a user: auth has no principal for it, and none is
// needed. fleet.Service.activity reads only p.User.ID, and a nil principal is
// its "no user", which the activity log records as the system (an empty
// user_id). Whoever can run these commands can read the database and the app
// key, so no role applies. The Meta is the one the user and token commands
// pass: no address, and "upanel command line" as the agent.
func cliActor() (*auth.Principal, auth.Meta) {
	return nil, auth.Meta{UserAgent: "upanel command line"}
}

// idFirst lets the one positional argument of "server COMMAND ID" come before
// the flags too ("server delete ID --yes"): the flag package stops at the
// first non-flag, so it moves a leading ID that flags follow to the end.
func idFirst(args []string) []string {
	if len(args) > 1 && !strings.HasPrefix(args[0], "-") && strings.HasPrefix(args[1], "-") {
		return append(append([]string{}, args[1:]...), args[0])
	}
	return args
}

func cmdServerAdd(ctx context.Context, e *env, args []string) error {
	var in fleet.ServerInput
	cfg, help, err := loadConfig(e, "server add", "upanel server add --name N --host H [--port 22] [--user upanel] [--agent-port 8443] [flags]", args,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.StringVar(&in.Name, "name", "", "a name to recognise the server by (required)")
			fs.StringVar(&in.Host, "host", "", "DNS name or IP address the panel reaches the server at (required)")
			fs.IntVar(&in.Port, "port", 22, "the server's SSH port")
			fs.StringVar(&in.Username, "user", "upanel", "the user UPanel signs in as over SSH; the bootstrap command creates it (not root)")
			fs.IntVar(&in.AgentPort, "agent-port", 8443, "the port the agent listens on")
		})
	if help || err != nil {
		return err
	}
	if err := needURL(cfg); err != nil {
		return err
	}
	if in.Name == "" || in.Host == "" {
		return usageError{"--name and --host are required"}
	}
	// fleet takes 0 as "the default" (an API client that leaves the field
	// out); here the default is leaving the flag out, so a typed 0 is a
	// mistake rather than a request for 22 or 8443.
	if in.Port == 0 || in.AgentPort == 0 {
		return usageError{"--port and --agent-port must be 1-65535 (leave them out for 22 and 8443)"}
	}
	// The service's own checks, run before the database is opened so that a
	// mistake changes nothing; Create runs them again.
	if _, err := in.Normalize(); err != nil {
		return usageError{apperr.MessageOf(err)}
	}
	svc, _, closeFn, err := e.fleet(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	srv, cmd, err := svc.Create(ctx, p, in, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "added server %s (%s), id %s\n\n", srv.Name, srv.Host, srv.ID)
	fmt.Fprintf(e.stdout, "SSH public key (UPanel signs in with it as %s):\n%s\n\n", srv.Username, strings.TrimSpace(srv.SSHPublicKey))
	e.printBootstrap(cfg, srv.ID, srv.Username, cmd)
	return nil
}

// printBootstrap shows a bootstrap command and what it does, and warns when
// the panel URL in it cannot be reached from another machine.
func (e *env) printBootstrap(cfg config.Config, id, username, cmd string) {
	fmt.Fprintf(e.stdout, "Run this as root on the new server; it works once and expires in 24 hours:\n\n  %s\n\n", cmd)
	fmt.Fprintf(e.stdout, "It creates the user %s with the key above and reports the server's SSH host keys to the panel, which pins them; "+
		"a running panel (upanel serve) then provisions the server.\n", username)
	if h := cfg.URL.Hostname(); h == "localhost" || isLoopback(h) {
		fmt.Fprintf(e.stderr, "warning: the command points at %s, which another machine cannot reach: set UPANEL_URL to the panel's public URL, "+
			"as for upanel serve, and get a new command with \"upanel server bootstrap %s\"\n", cfg.URL, id)
	}
}

// needURL checks that there is a panel URL for bootstrap commands to point
// at; config derives one from the listen address when UPANEL_URL is unset.
func needURL(cfg config.Config) error {
	if cfg.URL == nil {
		return usageError{"set UPANEL_URL to the panel's public URL: bootstrap commands point at it"}
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func cmdServerList(ctx context.Context, e *env, args []string) error {
	cfg, help, err := loadConfig(e, "server list", "upanel server list [flags]", args, storageFlags)
	if help || err != nil {
		return err
	}
	_, db, closeFn, err := e.fleet(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	servers, err := db.ListServers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tHOST\tPORT\tSTATUS\tSCORE\tLAST SEEN")
	for _, s := range servers {
		score, seen := "-", "never"
		if s.SecurityScore != nil {
			score = fmt.Sprint(*s.SecurityScore)
		}
		if s.LastSeenAt != nil {
			seen = s.LastSeenAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Name, s.Host, s.Port, s.Status, score, seen)
	}
	return tw.Flush()
}

func cmdServerBootstrap(ctx context.Context, e *env, args []string) error {
	cfg, rest, help, err := loadConfigArgs(e, "server bootstrap", "upanel server bootstrap [flags] ID", idFirst(args), 1, storageFlags)
	if help || err != nil {
		return err
	}
	if err := needURL(cfg); err != nil {
		return err
	}
	svc, db, closeFn, err := e.fleet(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	srv, err := db.GetServer(ctx, rest[0])
	if err != nil {
		return err
	}
	p, m := cliActor()
	cmd, err := svc.NewBootstrapCommand(ctx, p, srv.ID, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "new bootstrap command for server %s (%s); earlier ones no longer work\n\n", srv.Name, srv.ID)
	fmt.Fprintf(e.stdout, "SSH public key (UPanel signs in with it as %s):\n%s\n\n", srv.Username, strings.TrimSpace(srv.SSHPublicKey))
	e.printBootstrap(cfg, srv.ID, srv.Username, cmd)
	return nil
}

func cmdServerProvision(ctx context.Context, e *env, args []string) error {
	return serverJob(ctx, e, "provision", fleet.ProvisionKind, "provisioning (installs or upgrades the agent)", args)
}

func cmdServerHarden(ctx context.Context, e *env, args []string) error {
	return serverJob(ctx, e, "harden", fleet.HardenKind, "hardening", args)
}

// serverJob queues a provisioning or hardening job, as the API does.
func serverJob(ctx context.Context, e *env, name, kind, what string, args []string) error {
	cfg, rest, help, err := loadConfigArgs(e, "server "+name, "upanel server "+name+" [flags] ID", idFirst(args), 1, storageFlags)
	if help || err != nil {
		return err
	}
	svc, _, closeFn, err := e.fleet(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	jobID, err := svc.Enqueue(ctx, p, kind, rest[0], m)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "queued %s of server %s as job %s\n", what, rest[0], jobID)
	fmt.Fprintf(e.stdout, "a running panel (upanel serve) executes it; follow it on the server's page or at GET /api/v1/jobs/%s\n", jobID)
	return nil
}

func cmdServerDelete(ctx context.Context, e *env, args []string) error {
	var yes bool
	cfg, rest, help, err := loadConfigArgs(e, "server delete", "upanel server delete --yes [flags] ID", idFirst(args), 1,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.BoolVar(&yes, "yes", false, "confirm: remove the server and its apps, domains and metrics from the panel (required)")
		})
	if help || err != nil {
		return err
	}
	if !yes {
		return usageError{"deleting a server removes it from the panel with its apps, domains and metrics: add --yes to confirm"}
	}
	svc, _, closeFn, err := e.fleet(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	if err := svc.Delete(ctx, p, rest[0], m); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed server %s from the panel; nothing on the machine itself was changed\n", rest[0])
	return nil
}
