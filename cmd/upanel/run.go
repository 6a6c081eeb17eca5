package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"upanel/internal/config"
	"upanel/internal/logging"
	"upanel/internal/panel"
)

// version is set at release time with -ldflags "-X main.version=...".
var version = "dev"

// usageError is a mistake in the command line; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// env is what every command gets: its I/O and the process environment.
type env struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
	redactor       *logging.Redactor
	// panel lets tests add job handlers to serve.
	panel panel.Options
}

type command struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) error
	sub           []command
}

var commands = []command{
	{name: "serve", summary: "run the panel: web UI, API, jobs and scheduler", run: cmdServe},
	{name: "migrate", summary: "manage the database schema", sub: []command{
		{name: "up", summary: "apply pending migrations", run: cmdMigrateUp},
		{name: "status", summary: "list migrations and when they were applied", run: cmdMigrateStatus},
	}},
	{name: "key", summary: "manage the app keys that encrypt secrets", sub: []command{
		{name: "generate", summary: "print a new app key for UPANEL_APP_KEY", run: cmdKeyGenerate},
		{name: "rotate", summary: "re-encrypt every secret with a new key (resumable; stop serve first)", run: cmdKeyRotate},
	}},
	{name: "audit", summary: "check the audit trail", sub: []command{
		{name: "verify", summary: "verify the activity log's hash chain and report the first broken link", run: cmdAuditVerify},
	}},
	{name: "user", summary: "manage users from the shell", sub: []command{
		{name: "create", summary: "create a user (password from stdin, or generated)", run: cmdUserCreate},
		{name: "list", summary: "list users", run: cmdUserList},
		{name: "reset-2fa", summary: "turn off a user's two-factor authentication (lost device)", run: cmdUserReset2FA},
		{name: "unlock", summary: "clear a user's failed sign-in attempts", run: cmdUserUnlock},
	}},
	{name: "server", summary: "manage the servers the panel runs apps on", sub: []command{
		{name: "add", summary: "add a server and print its SSH key and one-time bootstrap command", run: cmdServerAdd},
		{name: "list", summary: "list servers", run: cmdServerList},
		{name: "bootstrap", summary: "print a new bootstrap command for a server (the old one stops working)", run: cmdServerBootstrap},
		{name: "provision", summary: "queue provisioning of a server (installs or upgrades its agent)", run: cmdServerProvision},
		{name: "harden", summary: "queue hardening of a server", run: cmdServerHarden},
		{name: "delete", summary: "remove a server from the panel (needs --yes)", run: cmdServerDelete},
	}},
	{name: "app", summary: "manage apps: settings and environment variables", sub: []command{
		{name: "list", summary: "list apps", run: cmdAppList},
		{name: "show", summary: "show an app's settings and env keys (never values)", run: cmdAppShow},
		{name: "create", summary: "add an app on a server and print its push-to-deploy URL and secret", run: cmdAppCreate},
		{name: "delete", summary: "remove an app from the panel (needs --yes)", run: cmdAppDelete},
		{name: "deploy", summary: "queue a deployment of an app (upanel serve runs it)", run: cmdAppDeploy},
		{name: "env", summary: "set or unset environment variables (values from stdin or a file)", sub: []command{
			{name: "set", summary: "set variables from KEY=value lines on stdin or in --file", run: cmdAppEnvSet},
			{name: "unset", summary: "remove variables by name", run: cmdAppEnvUnset},
		}},
	}},
	{name: "credential", summary: "manage git credentials (secrets from stdin or a file)", sub: []command{
		{name: "list", summary: "list git credentials (never their secrets)", run: cmdCredentialList},
		{name: "create", summary: "add a git credential: a generated or pasted SSH key, a token, or a user name and password", run: cmdCredentialCreate},
		{name: "delete", summary: "delete a git credential no app uses", run: cmdCredentialDelete},
	}},
	{name: "deployment", summary: "list, follow, cancel and roll back app deployments (upanel serve runs them)", sub: []command{
		{name: "list", summary: "list an app's deployments, newest first", run: cmdDeploymentList},
		{name: "show", summary: "show a deployment", run: cmdDeploymentShow},
		{name: "log", summary: "print a deployment's log (--follow: until it ends)", run: cmdDeploymentLog},
		{name: "cancel", summary: "cancel a queued or running deployment", run: cmdDeploymentCancel},
		{name: "rollback", summary: "queue a redeploy of an earlier successful deployment's commit", run: cmdDeploymentRollback},
	}},
	{name: "token", summary: "manage API tokens", sub: []command{
		{name: "create", summary: "create an API token for a user and print it", run: cmdTokenCreate},
	}},
	{name: "version", summary: "print the version", run: cmdVersion},
}

// run is main without the process: tests call it with their own arguments,
// environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return newEnv(getenv, stdin, stdout, stderr).run(ctx, args)
}

func newEnv(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *env {
	return &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr, redactor: logging.NewRedactor()}
}

func (e *env) run(ctx context.Context, args []string) error {
	return dispatch(ctx, e, "upanel", commands, args)
}

func dispatch(ctx context.Context, e *env, path string, cmds []command, args []string) error {
	if len(args) == 0 {
		printCommands(e.stderr, path, cmds)
		return usageError{"a command is required (" + path + " help lists them)"}
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		printCommands(e.stdout, path, cmds)
		return nil
	}
	for _, c := range cmds {
		if c.name != name {
			continue
		}
		if c.sub != nil {
			return dispatch(ctx, e, path+" "+name, c.sub, args[1:])
		}
		return c.run(ctx, e, args[1:])
	}
	printCommands(e.stderr, path, cmds)
	return usageError{fmt.Sprintf("unknown command %q (%s help lists them)", name, path)}
}

func printCommands(w io.Writer, path string, cmds []command) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", path)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"%s <command> --help\" for a command's flags.\n", path)
}

// parseFlags parses a command's flags. --help prints usage to stdout and ends the
// command successfully; anything malformed is a usage error.
func parseFlags(e *env, fs *flag.FlagSet, usage string, args []string) (help bool, err error) {
	return parseFlagsArgs(e, fs, usage, args, 0)
}

// parseFlagsArgs is parseFlags for commands that take exactly nargs
// positional arguments after their flags.
func parseFlagsArgs(e *env, fs *flag.FlagSet, usage string, args []string, nargs int) (help bool, err error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	printUsage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: %s\n", usage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(e.stdout)
			return true, nil
		}
		printUsage(e.stderr)
		return false, usageError{err.Error()}
	}
	if fs.NArg() > nargs {
		printUsage(e.stderr)
		return false, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(nargs))}
	}
	if fs.NArg() < nargs {
		printUsage(e.stderr)
		return false, usageError{"missing argument: " + usage}
	}
	return false, nil
}

// loadConfig reads the environment, applies flags bound by bind, and validates.
func loadConfig(e *env, name, usage string, args []string, bind func(*config.Config, *flag.FlagSet)) (cfg config.Config, help bool, err error) {
	cfg, _, help, err = loadConfigArgs(e, name, usage, args, 0, bind)
	return cfg, help, err
}

// loadConfigArgs is loadConfig for commands with nargs positional arguments,
// which it returns.
func loadConfigArgs(e *env, name, usage string, args []string, nargs int, bind func(*config.Config, *flag.FlagSet)) (cfg config.Config, rest []string, help bool, err error) {
	cfg, envErr := config.FromEnv(e.getenv)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	bind(&cfg, fs)
	if help, err = parseFlagsArgs(e, fs, usage, args, nargs); help || err != nil {
		return cfg, nil, help, err
	}
	rest = fs.Args()
	if envErr != nil {
		return cfg, nil, false, usageError{envErr.Error()}
	}
	if err := cfg.Finish(); err != nil {
		return cfg, nil, false, usageError{strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	return cfg, rest, false, nil
}

func (e *env) logger(cfg config.Config) *slog.Logger {
	return logging.New(e.stderr, logging.Format(cfg.LogFormat), cfg.LogLevel, e.redactor)
}

func cmdVersion(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if help, err := parseFlags(e, fs, "upanel version", args); help || err != nil {
		return err
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
		fmt.Fprintf(e.stdout, "upanel %s%s (%s)\n", version, rev, bi.GoVersion)
		return nil
	}
	fmt.Fprintf(e.stdout, "upanel %s\n", version)
	return nil
}
