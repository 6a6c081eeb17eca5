package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/config"
	"upanel/internal/deploy"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// Apps and git credentials from the shell. Secrets (a credential's private
// key, token or password, and env values) are read from stdin or a file,
// never from the command line, where other users of the machine could read
// them in the process list.

// maxSecretInput bounds what a command reads from stdin or a file.
const maxSecretInput = 1 << 20

// readInput reads all of a file ("-" or "" for stdin), bounded.
func (e *env) readInput(path string) (string, error) {
	var r io.Reader = e.stdin
	if path != "" && path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", usageError{err.Error()}
		}
		defer f.Close()
		r = f
	}
	if r == nil {
		return "", nil
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSecretInput+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretInput {
		return "", usageError{fmt.Sprintf("the input is larger than %d bytes", maxSecretInput)}
	}
	return string(b), nil
}

// readEnvLines reads KEY=value lines, as a .env file holds them: blank lines
// and # comments are skipped. Errors name the line, never its text.
func readEnvLines(text string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), maxSecretInput)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usageError{fmt.Sprintf("line %d is not KEY=value", n)}
		}
		if deploy.ValidEnvKey(k) != nil {
			return nil, usageError{fmt.Sprintf("line %d: the name before = must be letters, digits and _, not starting with a digit, "+
				"and not start with COMPOSE_ or DOCKER_", n)}
		}
		if _, dup := out[k]; dup {
			return nil, usageError{fmt.Sprintf("line %d sets %s a second time", n, k)}
		}
		if err := deploy.ValidEnvValue(k, v); err != nil {
			return nil, usageError{apperr.MessageOf(err)}
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, usageError{"the variables could not be read: " + err.Error()}
	}
	return out, nil
}

// loadConfigAtLeast is loadConfigArgs for commands that take min or more
// positional arguments after their flags.
func loadConfigAtLeast(e *env, name, usage string, args []string, min int, bind func(*config.Config, *flag.FlagSet)) (cfg config.Config, rest []string, help bool, err error) {
	cfg, envErr := config.FromEnv(e.getenv)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	bind(&cfg, fs)
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
			return cfg, nil, true, nil
		}
		printUsage(e.stderr)
		return cfg, nil, false, usageError{err.Error()}
	}
	if fs.NArg() < min {
		printUsage(e.stderr)
		return cfg, nil, false, usageError{"missing argument: " + usage}
	}
	if envErr != nil {
		return cfg, nil, false, usageError{envErr.Error()}
	}
	if err := cfg.Finish(); err != nil {
		return cfg, nil, false, usageError{strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	return cfg, fs.Args(), false, nil
}

func valueOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdAppList(ctx context.Context, e *env, args []string) error {
	var serverID string
	cfg, help, err := loadConfig(e, "app list", "upanel app list [--server ID] [flags]", args, func(c *config.Config, fs *flag.FlagSet) {
		c.StorageFlags(fs)
		fs.StringVar(&serverID, "server", "", "only the apps of this server (its id)")
	})
	if help || err != nil {
		return err
	}
	_, db, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	apps, err := db.ListApps(ctx, serverID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSLUG\tSERVER\tSTATUS\tBRANCH\tCOMMIT\tREPOSITORY")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Name, a.Slug, a.ServerID, a.Status, a.GitBranch, valueOrDash(wire.ShortCommit(a.CurrentCommit)), a.GitRepository)
	}
	return tw.Flush()
}

func cmdAppShow(ctx context.Context, e *env, args []string) error {
	cfg, rest, help, err := loadConfigArgs(e, "app show", "upanel app show [flags] APP-ID", idFirst(args), 1, storageFlags)
	if help || err != nil {
		return err
	}
	svc, db, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	a, err := db.GetApp(ctx, rest[0])
	if err != nil {
		return err
	}
	server := a.ServerID
	if srv, err := db.GetServer(ctx, a.ServerID); err == nil {
		server = srv.Name + " (" + srv.ID + ")"
	}
	cred := "none (public repository)"
	if a.GitCredentialsID != "" {
		if c, err := db.GetGitCredential(ctx, a.GitCredentialsID); err == nil {
			cred = c.Name + " (" + c.Type + ", " + c.ID + ")"
		}
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"id", a.ID}, {"name", a.Name}, {"slug", a.Slug}, {"server", server}, {"status", a.Status},
		{"repository", a.GitRepository}, {"branch", a.GitBranch}, {"credential", cred},
		{"deploy path", a.DeployPath}, {"compose file", a.DockerComposeFile},
		{"domain", valueOrDash(a.PrimaryDomain)}, {"staging domain", valueOrDash(a.StagingDomain)},
		{"commit", valueOrDash(a.CurrentCommit)}, {"releases kept", fmt.Sprint(a.KeepReleases)},
		{"push-to-deploy URL", valueOrDash(svc.HookURL(a))}, {"created", a.CreatedAt.UTC().Format(time.DateTime)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	for _, scope := range deploy.EnvScopes() {
		keys, err := svc.Keys(ctx, a.ID, scope)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "env %s:\t%s\n", scope, valueOrDash(strings.Join(keys, " ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "(env values are never shown)")
	return nil
}

func cmdAppCreate(ctx context.Context, e *env, args []string) error {
	var in deploy.AppInput
	var envFile string
	cfg, help, err := loadConfig(e, "app create",
		"upanel app create --server ID --name N --repo URL [--branch B] [--credential ID] [--env-file FILE|-] [flags]", args,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.StringVar(&in.ServerID, "server", "", "the id of the server the app runs on (required)")
			fs.StringVar(&in.Name, "name", "", "the app's name (required)")
			fs.StringVar(&in.GitRepository, "repo", "", "the git repository: https://host/path or git@host:path (required)")
			fs.StringVar(&in.Slug, "slug", "", "the app's name on its server, a-z 0-9 - (default: made from the name)")
			fs.StringVar(&in.GitBranch, "branch", "", "the branch to deploy (default main)")
			fs.StringVar(&in.GitCredentialsID, "credential", "", "the id of the git credential for a private repository")
			fs.StringVar(&in.DeployPath, "deploy-path", "", "the app's directory on the server (default "+deploy.AppsRoot+"/SLUG)")
			fs.StringVar(&in.DockerComposeFile, "compose-file", "", "the compose file in the repository (default docker-compose.yml)")
			fs.StringVar(&in.PrimaryDomain, "domain", "", "the app's domain")
			fs.StringVar(&in.StagingDomain, "staging-domain", "", "the staging environment's domain")
			fs.IntVar(&in.KeepReleases, "keep-releases", 0, "how many releases keep their images, 1 to 50 (default 5)")
			fs.StringVar(&envFile, "env-file", "", "read base environment variables, KEY=value lines, from this file (- for stdin)")
		})
	if help || err != nil {
		return err
	}
	if in.ServerID == "" || in.Name == "" || in.GitRepository == "" {
		return usageError{"--server, --name and --repo are required"}
	}
	if envFile != "" {
		text, err := e.readInput(envFile)
		if err != nil {
			return err
		}
		if in.EnvVars, err = readEnvLines(text); err != nil {
			return err
		}
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	a, secret, err := svc.CreateApp(ctx, p, in, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "added app %s (slug %s), id %s\n", a.Name, a.Slug, a.ID)
	fmt.Fprintf(e.stdout, "push-to-deploy URL:    %s\n", svc.HookURL(a))
	fmt.Fprintf(e.stdout, "push-to-deploy secret: %s\n", secret)
	fmt.Fprintln(e.stdout, "the secret is shown only now: give it to the git host's webhook")
	return nil
}

func cmdAppDelete(ctx context.Context, e *env, args []string) error {
	var yes bool
	cfg, rest, help, err := loadConfigArgs(e, "app delete", "upanel app delete --yes [flags] APP-ID", idFirst(args), 1,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.BoolVar(&yes, "yes", false, "confirm: remove the app and its deployment history from the panel (required)")
		})
	if help || err != nil {
		return err
	}
	if !yes {
		return usageError{"deleting an app removes it and its deployment history from the panel: add --yes to confirm"}
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	if err := svc.DeleteApp(ctx, p, rest[0], m); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed app %s from the panel; nothing on its server was changed (its containers keep running)\n", rest[0])
	return nil
}

// scopeFlag binds --scope.
func scopeFlag(fs *flag.FlagSet, scope *string) {
	fs.StringVar(scope, "scope", store.EnvBase, "the env scope: base (every environment), production or staging (overrides)")
}

func checkScope(scope string) error {
	for _, s := range deploy.EnvScopes() {
		if s == scope {
			return nil
		}
	}
	return usageError{"--scope must be base, production or staging"}
}

func cmdAppEnvSet(ctx context.Context, e *env, args []string) error {
	var scope, file string
	cfg, rest, help, err := loadConfigArgs(e, "app env set", "upanel app env set [--scope S] [--file FILE] [flags] APP-ID < KEY=value lines",
		idFirst(args), 1, func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			scopeFlag(fs, &scope)
			fs.StringVar(&file, "file", "-", "read the KEY=value lines from this file (- for stdin)")
		})
	if help || err != nil {
		return err
	}
	if err := checkScope(scope); err != nil {
		return err
	}
	text, err := e.readInput(file)
	if err != nil {
		return err
	}
	set, err := readEnvLines(text)
	if err != nil {
		return err
	}
	if len(set) == 0 {
		return usageError{"no variables given: pass KEY=value lines on stdin or in --file (values never go on the command line)"}
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	keys, err := svc.SetEnv(ctx, p, rest[0], scope, set, nil, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "set %d variable(s) in %s; its keys are now: %s\n", len(set), scope, strings.Join(keys, " "))
	return nil
}

func cmdAppEnvUnset(ctx context.Context, e *env, args []string) error {
	var scope string
	cfg, rest, help, err := loadConfigAtLeast(e, "app env unset", "upanel app env unset [--scope S] [flags] APP-ID KEY...", args, 2,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			scopeFlag(fs, &scope)
		})
	if help || err != nil {
		return err
	}
	if err := checkScope(scope); err != nil {
		return err
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	keys, err := svc.SetEnv(ctx, p, rest[0], scope, nil, rest[1:], m)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "unset %s in %s; its keys are now: %s\n", strings.Join(rest[1:], " "), scope, valueOrDash(strings.Join(keys, " ")))
	return nil
}

func cmdCredentialList(ctx context.Context, e *env, args []string) error {
	cfg, help, err := loadConfig(e, "credential list", "upanel credential list [flags]", args, storageFlags)
	if help || err != nil {
		return err
	}
	_, db, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	list, err := db.ListGitCredentials(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTYPE\tAPPS\tHOST\tHOST KEYS\tPUBLIC KEY")
	for _, c := range list {
		host, hosts := valueOrDash(c.Host), "-"
		if c.Type == store.GitSSHKey {
			hosts = fmt.Sprint(len(deploy.KnownHostKeys(c.KnownHosts)))
		} else if c.Host == "" {
			host = "none (an admin must set it)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", c.ID, c.Name, c.Type, c.Apps, host, hosts, valueOrDash(c.PublicKey))
	}
	return tw.Flush()
}

func cmdCredentialCreate(ctx context.Context, e *env, args []string) error {
	var in deploy.CredentialInput
	var secretFile, knownHostsFile string
	cfg, help, err := loadConfig(e, "credential create",
		"upanel credential create --name N --type ssh_key|token|basic [--generate] [--host H] [--username U] [--known-hosts-file F] [--secret-file F] [flags] < SECRET", args,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.StringVar(&in.Name, "name", "", "the credential's name (required)")
			fs.StringVar(&in.Type, "type", "", "ssh_key, token or basic (required)")
			fs.BoolVar(&in.Generate, "generate", false, "ssh_key: generate an ed25519 key and print its public key (nothing is read)")
			fs.StringVar(&in.Host, "host", "", "token and basic (required): the one https host[:port] the secret may be sent to, or the https:// URL of a repository there")
			fs.StringVar(&in.Username, "username", "", "token (optional) or basic: the user name")
			fs.StringVar(&knownHostsFile, "known-hosts-file", "", "ssh_key: the git server's host keys, as ssh-keyscan prints them")
			fs.StringVar(&secretFile, "secret-file", "-", "read the private key, token or password from this file (- for stdin)")
		})
	if help || err != nil {
		return err
	}
	if in.Name == "" || in.Type == "" {
		return usageError{"--name and --type are required"}
	}
	if knownHostsFile != "" {
		if in.KnownHosts, err = e.readInput(knownHostsFile); err != nil {
			return err
		}
	}
	if !in.Generate {
		text, err := e.readInput(secretFile)
		if err != nil {
			return err
		}
		switch in.Type {
		case store.GitSSHKey:
			in.PrivateKey = text
		case store.GitToken:
			in.Token = strings.TrimRight(text, "\r\n")
		case store.GitBasic:
			in.Password = strings.TrimRight(text, "\r\n")
		}
		if strings.TrimSpace(text) == "" {
			return usageError{"no secret given: pass the private key, token or password on stdin or in --secret-file (or --generate an SSH key)"}
		}
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	c, err := svc.CreateCredential(ctx, p, in, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "added git credential %s (%s), id %s\n", c.Name, c.Type, c.ID)
	if c.Host != "" {
		fmt.Fprintf(e.stdout, "It is sent to %s and to no other host.\n", c.Host)
	}
	if c.PublicKey != "" {
		fmt.Fprintf(e.stdout, "\nAdd this public key to the repository as a read-only deploy key:\n%s\n", c.PublicKey)
		if c.KnownHosts == "" {
			fmt.Fprintln(e.stdout, "\nIts git server's host keys are not pinned yet: an ssh repository cannot use it until they are (--known-hosts-file, or the credential's page).")
		}
	}
	return nil
}

func cmdCredentialDelete(ctx context.Context, e *env, args []string) error {
	cfg, rest, help, err := loadConfigArgs(e, "credential delete", "upanel credential delete [flags] CREDENTIAL-ID", idFirst(args), 1, storageFlags)
	if help || err != nil {
		return err
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	if err := svc.DeleteCredential(ctx, p, rest[0], m); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted git credential %s\n", rest[0])
	return nil
}
