package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/config"
	"upanel/internal/deploy"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// Deployments from the shell. The commands queue and read; the job runner
// of a running panel (upanel serve) runs the deployments.

// deployLogPoll is how often "deployment log --follow" reads the database:
// the lines are stored by the serve process, which cannot wake this one.
const deployLogPoll = 500 * time.Millisecond

// openDeployments opens the database and the deploy service for a command.
func (e *env) openDeployments(ctx context.Context, cfg config.Config) (*deploy.Service, *store.DB, func(), error) {
	servers, db, closeFn, err := e.fleet(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	svc := deploy.New(deploy.Options{DB: db, Log: e.logger(cfg), Recorder: audit.New(db), Fleet: servers, BaseURL: cfg.URL})
	return svc, db, closeFn, nil
}

func cmdAppDeploy(ctx context.Context, e *env, args []string) error {
	var env, commit string
	cfg, rest, help, err := loadConfigArgs(e, "app deploy", "upanel app deploy [--environment production|staging] [--commit SHA] [flags] APP-ID",
		idFirst(args), 1, func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.StringVar(&env, "environment", deploy.Production, "the environment to deploy: production or staging")
			fs.StringVar(&commit, "commit", "", "deploy this commit (a whole id: 40 hex digits) instead of the branch head")
		})
	if help || err != nil {
		return err
	}
	if _, err := deploy.ValidEnvironment(env); err != nil {
		return usageError{apperr.MessageOf(err)}
	}
	svc, db, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	id, err := svc.Deploy(ctx, p, deploy.DeployInput{AppID: rest[0], Environment: env, Commit: commit, Trigger: deploy.TriggerManual}, m)
	if err != nil {
		return err
	}
	d, err := db.GetDeployment(ctx, id)
	if err != nil {
		return err
	}
	what := "the head of " + d.Branch
	if d.RequestedCommit != "" {
		what = "commit " + d.RequestedCommit
	}
	fmt.Fprintf(e.stdout, "queued the %s deployment %s of %s\n", d.Environment, d.ID, what)
	fmt.Fprintf(e.stdout, "a running panel (upanel serve) runs it; follow it with: upanel deployment log --follow %s\n", d.ID)
	return nil
}

func cmdDeploymentList(ctx context.Context, e *env, args []string) error {
	var f store.DeploymentFilter
	cfg, rest, help, err := loadConfigArgs(e, "deployment list", "upanel deployment list [--environment E] [--limit N] [flags] APP-ID",
		idFirst(args), 1, func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.StringVar(&f.Environment, "environment", "", "only this environment's deployments (production or staging)")
			fs.IntVar(&f.Limit, "limit", 20, "how many, newest first (1 to 500)")
		})
	if help || err != nil {
		return err
	}
	if f.Environment != "" {
		if _, err := deploy.ValidEnvironment(f.Environment); err != nil {
			return usageError{apperr.MessageOf(err)}
		}
	}
	if f.Limit < 1 || f.Limit > 500 {
		return usageError{"--limit must be 1 to 500"}
	}
	_, db, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	if _, err := db.GetApp(ctx, rest[0]); err != nil {
		return err
	}
	ds, err := db.ListDeployments(ctx, rest[0], f)
	if err != nil {
		return err
	}
	now := db.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tENVIRONMENT\tSTATUS\tCOMMIT\tTRIGGER\tQUEUED\tDURATION")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Environment, d.Status, valueOrDash(wire.ShortCommit(d.CommitHash)), d.TriggeredBy,
			d.CreatedAt.UTC().Format(time.DateTime), deployDuration(d, now))
	}
	return tw.Flush()
}

func deployDuration(d *store.Deployment, now time.Time) string {
	if d.StartedAt == nil {
		return "-"
	}
	return deploy.DeploymentDuration(d, now).String()
}

// oneDeployment parses the flags and the id of a command about one
// deployment.
func oneDeployment(e *env, name, usage string, args []string, bind func(*flag.FlagSet)) (cfg config.Config, id string, help bool, err error) {
	cfg, rest, help, err := loadConfigArgs(e, "deployment "+name, usage, idFirst(args), 1, func(c *config.Config, fs *flag.FlagSet) {
		c.StorageFlags(fs)
		if bind != nil {
			bind(fs)
		}
	})
	if help || err != nil {
		return cfg, "", help, err
	}
	return cfg, rest[0], false, nil
}

func cmdDeploymentShow(ctx context.Context, e *env, args []string) error {
	cfg, id, help, err := oneDeployment(e, "show", "upanel deployment show [flags] ID", args, nil)
	if help || err != nil {
		return err
	}
	_, db, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	d, err := db.GetDeployment(ctx, id)
	if err != nil {
		return err
	}
	app, err := db.GetApp(ctx, d.AppID)
	if err != nil {
		return err
	}
	when := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.DateTime) + " UTC"
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("id", d.ID)
	row("app", app.Name+" ("+app.ID+")")
	row("environment", d.Environment)
	row("status", d.Status)
	if d.CancelRequested() {
		row("cancel", "requested ("+d.ErrorMessage+")")
	} else if d.ErrorMessage != "" {
		row("error", d.ErrorMessage)
	}
	row("branch", d.Branch)
	row("commit", valueOrDash(d.CommitHash))
	if d.CommitMessage != "" {
		row("message", strings.SplitN(d.CommitMessage, "\n", 2)[0])
	}
	row("requested commit", valueOrDash(d.RequestedCommit))
	row("triggered by", d.TriggeredBy)
	if d.IsRollback {
		row("rollback of", valueOrDash(d.RollbackFromID))
	}
	row("queued", when(&d.CreatedAt))
	row("started", when(d.StartedAt))
	row("finished", when(d.FinishedAt))
	row("duration", deployDuration(d, db.Now()))
	row("log lines", fmt.Sprint(d.LogSeq))
	return tw.Flush()
}

// errDeploymentEnded is the error of a followed deployment that did not
// succeed, so that a script can tell.
var errDeploymentEnded = errors.New("the deployment did not succeed")

func cmdDeploymentLog(ctx context.Context, e *env, args []string) error {
	var follow bool
	var after int
	cfg, id, help, err := oneDeployment(e, "log", "upanel deployment log [--follow] [--after N] [flags] ID", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&follow, "follow", false, "keep printing lines as they are stored until the deployment ends; exit 1 unless it succeeded")
		fs.IntVar(&after, "after", 0, "print only the lines after this line number")
	})
	if help || err != nil {
		return err
	}
	if after < 0 {
		return usageError{"--after must be 0 or more"}
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	f, lines, d, err := svc.FollowLog(ctx, id, after)
	if err != nil {
		return err
	}
	defer f.Close()
	write := func(ls []deploy.LogLine) {
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(l.Text)
			b.WriteByte('\n')
		}
		fmt.Fprint(e.stdout, b.String())
	}
	write(lines)
	if !follow {
		return nil
	}
	t := time.NewTicker(deployLogPoll)
	defer t.Stop()
	for !d.Terminal() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.Wake():
		case <-t.C:
		}
		if lines, d, err = f.Next(ctx); err != nil {
			return err
		}
		write(lines)
	}
	fmt.Fprintf(e.stderr, "deployment %s: %s\n", d.ID, d.Status)
	if d.Status != store.DeploymentSuccess {
		if d.ErrorMessage != "" {
			return fmt.Errorf("%w: %s (%s)", errDeploymentEnded, d.Status, d.ErrorMessage)
		}
		return fmt.Errorf("%w: %s", errDeploymentEnded, d.Status)
	}
	return nil
}

func cmdDeploymentCancel(ctx context.Context, e *env, args []string) error {
	cfg, id, help, err := oneDeployment(e, "cancel", "upanel deployment cancel [flags] ID", args, nil)
	if help || err != nil {
		return err
	}
	svc, _, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	d, err := svc.Cancel(ctx, p, id, m)
	if err != nil {
		return err
	}
	if d.Terminal() {
		fmt.Fprintf(e.stdout, "cancelled deployment %s\n", d.ID)
		return nil
	}
	fmt.Fprintf(e.stdout, "asked the running deployment %s to stop; the previous release keeps serving. "+
		"It ends cancelled (or as whatever it reached first): see upanel deployment show %s\n", d.ID, d.ID)
	return nil
}

func cmdDeploymentRollback(ctx context.Context, e *env, args []string) error {
	cfg, id, help, err := oneDeployment(e, "rollback", "upanel deployment rollback [flags] ID", args, nil)
	if help || err != nil {
		return err
	}
	svc, db, closeFn, err := e.openDeployments(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	p, m := cliActor()
	newID, err := svc.Rollback(ctx, p, id, m)
	if err != nil {
		return err
	}
	d, err := db.GetDeployment(ctx, newID)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "queued the %s rollback %s to commit %s\n", d.Environment, d.ID, wire.ShortCommit(d.RequestedCommit))
	fmt.Fprintf(e.stdout, "a running panel (upanel serve) runs it; follow it with: upanel deployment log --follow %s\n", d.ID)
	return nil
}
