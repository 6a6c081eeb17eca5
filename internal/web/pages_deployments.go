package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// The deployment pages: an app's deployments with the deploy form and
// rollback buttons, and one deployment with its live log.

type deploymentsData struct {
	App         *store.App
	Deployments []*store.Deployment
	Envs        []string
	Env         string // the deploy form's environment
	now         time.Time
}

// Duration shows how long a deployment took, or has been running.
func (d *deploymentsData) Duration(x *store.Deployment) string { return durationText(x, d.now) }

type deploymentData struct {
	App        *store.App
	Deployment *store.Deployment
	Lines      []deploy.LogLine
	// Last is the number of the last line shown: the live log goes on
	// after it.
	Last int
	now  time.Time
}

// Duration shows how long the deployment took, or has been running.
func (d *deploymentData) Duration() string { return durationText(d.Deployment, d.now) }

// Cancellable says whether a cancel button makes sense.
func (d *deploymentData) Cancellable() bool {
	x := d.Deployment
	return x.Status == store.DeploymentQueued || (x.Status == store.DeploymentRunning && !x.CancelRequested())
}

func durationText(x *store.Deployment, now time.Time) string {
	if x.StartedAt == nil {
		return "—"
	}
	return deploy.DeploymentDuration(x, now).String()
}

// deploymentStatusClass names the colour of a deployment status.
func deploymentStatusClass(status string) string {
	switch status {
	case store.DeploymentSuccess:
		return "st-online"
	case store.DeploymentFailed:
		return "st-error"
	case store.DeploymentCancelled:
		return "st-offline"
	}
	return "st-pending"
}

// StatusClass is deploymentStatusClass for templates.
func (d *deploymentsData) StatusClass(status string) string { return deploymentStatusClass(status) }

// StatusClass is deploymentStatusClass for templates.
func (d *deploymentData) StatusClass(status string) string { return deploymentStatusClass(status) }

// Short abbreviates a commit id.
func (d *deploymentsData) Short(c string) string { return wire.ShortCommit(c) }

// Short abbreviates a commit id.
func (d *deploymentData) Short(c string) string { return wire.ShortCommit(c) }

func (s *Server) deploymentsPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderDeployments(w, r, nil)
}

// renderDeployments shows an app's deployments; after err (a deploy that
// was refused) it shows why and keeps the form's choice.
func (s *Server) renderDeployments(w http.ResponseWriter, r *http.Request, err error) {
	ctx, id := r.Context(), r.PathValue("id")
	app, lerr := s.DB.GetApp(ctx, id)
	var ds []*store.Deployment
	if lerr == nil {
		ds, lerr = s.DB.ListDeployments(ctx, id, store.DeploymentFilter{Limit: 50})
	}
	if lerr != nil {
		s.fail(w, r, false, lerr)
		return
	}
	pg := s.newPage(w, r, app.Name+" · deployments")
	pg.Nav = "apps"
	s.withEmails(r, pg)
	d := &deploymentsData{App: app, Deployments: ds, Envs: []string{deploy.Production, deploy.Staging}, Env: deploy.Production, now: s.DB.Now()}
	pg.Data = d
	if err != nil {
		if env := r.PostFormValue("environment"); env == deploy.Staging {
			d.Env = env
		}
		pg.Form = url.Values{"commit": {r.PostFormValue("commit")}}
		s.renderForm(w, r, "deployments", pg, err)
		return
	}
	s.render(w, r, "deployments", pg)
}

func (s *Server) deploymentCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.fail(w, r, false, s.deployUnavailable())
		return
	}
	appID := r.PathValue("id")
	if _, err := s.DB.GetApp(r.Context(), appID); err != nil {
		s.fail(w, r, false, err)
		return
	}
	id, err := s.Deploy.Deploy(r.Context(), p, deploy.DeployInput{AppID: appID, Environment: r.PostFormValue("environment"),
		Commit: strings.TrimSpace(r.PostFormValue("commit")), Trigger: deploy.TriggerManual}, s.meta(r))
	if err != nil {
		s.renderDeployments(w, r, err)
		return
	}
	s.redirect(w, r, "/deployments/"+id, "Deployment queued.")
}

func (s *Server) deploymentPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.fail(w, r, false, s.deployUnavailable())
		return
	}
	ctx := r.Context()
	f, lines, dep, err := s.Deploy.FollowLog(ctx, r.PathValue("id"), 0)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	f.Close()
	app, err := s.DB.GetApp(ctx, dep.AppID)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg := s.newPage(w, r, app.Name+" · deployment")
	pg.Nav = "apps"
	s.withEmails(r, pg)
	d := &deploymentData{App: app, Deployment: dep, Lines: lines, now: s.DB.Now()}
	if len(lines) > 0 {
		d.Last = lines[len(lines)-1].Seq
	}
	pg.Data = d
	s.render(w, r, "deployment", pg)
}

func (s *Server) deploymentCancel(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.fail(w, r, false, s.deployUnavailable())
		return
	}
	id := r.PathValue("id")
	if _, err := s.DB.GetDeployment(r.Context(), id); err != nil {
		s.fail(w, r, false, err)
		return
	}
	d, err := s.Deploy.Cancel(r.Context(), p, id, s.meta(r))
	if err != nil {
		s.redirect(w, r, "/deployments/"+id, shortenFlash("Not cancelled: "+sentence(apperr.MessageOf(err)), 400))
		return
	}
	msg := "Deployment cancelled."
	if !d.Terminal() {
		msg = "Cancel requested: the running step stops and the previous release keeps serving."
	}
	s.redirect(w, r, "/deployments/"+id, msg)
}

func (s *Server) deploymentRollback(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.fail(w, r, false, s.deployUnavailable())
		return
	}
	id := r.PathValue("id")
	from, err := s.DB.GetDeployment(r.Context(), id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	newID, err := s.Deploy.Rollback(r.Context(), p, id, s.meta(r))
	if err != nil {
		s.redirect(w, r, "/apps/"+from.AppID+"/deployments", shortenFlash("Not rolled back: "+sentence(apperr.MessageOf(err)), 400))
		return
	}
	s.redirect(w, r, "/deployments/"+newID, "Rollback to "+wire.ShortCommit(from.CommitHash)+" queued.")
}
