package web

import (
	"net/http"
	"net/url"
	"slices"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// The running view of an app: its containers per environment, start, stop
// and restart, a tail of their logs, and the push-to-deploy deliveries.

type runningData struct {
	App  *store.App
	Env  string
	Envs []string
	// Status is nil when the agent could not say; StatusErr says why.
	Status    *wire.ProjectStatus
	StatusErr string
	Logs      *wire.ProjectLogs
	LogsErr   string
	Service   string
	Tail      int
	Tails     []int
	// Deliveries are the latest push-to-deploy deliveries.
	Deliveries []store.DeployHookDelivery
}

// Services lists the services seen, for the log viewer's selector.
func (d *runningData) Services() []string {
	if d.Status == nil {
		return nil
	}
	out := make([]string, 0, len(d.Status.Services))
	for _, x := range d.Status.Services {
		out = append(out, x.Service)
	}
	return out
}

// StateClass names the colour of a service's state.
func (d *runningData) StateClass(state, health string) string {
	switch {
	case health == "unhealthy" || state == "exited" || state == "dead":
		return "st-error"
	case state == "running" && (health == "" || health == "healthy"):
		return "st-online"
	}
	return "st-pending"
}

func (s *Server) appRunningPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.fail(w, r, false, s.deployUnavailable())
		return
	}
	ctx, id, q := r.Context(), r.PathValue("id"), r.URL.Query()
	app, err := s.DB.GetApp(ctx, id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	d := &runningData{App: app, Env: environmentParam(r), Envs: []string{deploy.Production, deploy.Staging},
		Service: q.Get("service"), Tails: deploy.LogTails}
	if d.Env != deploy.Production && d.Env != deploy.Staging {
		s.fail(w, r, false, apperr.New(apperr.Invalid, "environment must be production or staging"))
		return
	}
	if d.Tail, err = deploy.ParseLogTail(q.Get("tail")); err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg := s.newPage(w, r, app.Name+" · running")
	pg.Nav = "apps"
	if d.Status, err = s.Deploy.Status(ctx, id, d.Env); err != nil {
		d.StatusErr = sentence(apperr.MessageOf(err))
		s.logAgentError(r, "app status", err)
	}
	if d.Status != nil && (d.Service == "" || slices.Contains(d.Services(), d.Service)) {
		if d.Logs, err = s.Deploy.Logs(ctx, id, d.Env, d.Service, d.Tail); err != nil {
			d.LogsErr = sentence(apperr.MessageOf(err))
			s.logAgentError(r, "app logs", err)
		}
	}
	if d.Deliveries, err = s.DB.DeployHookDeliveries(ctx, id, 20); err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg.Data = d
	s.render(w, r, "app_running", pg)
}

// logAgentError logs an error that is not the user's to fix.
func (s *Server) logAgentError(r *http.Request, what string, err error) {
	if c := apperr.CodeOf(err); c == apperr.Internal {
		s.Log.Error(what, "request_id", RequestID(r.Context()), "err", err)
	}
}

// appControl runs the start, stop and restart buttons of the running view
// (and of the app page), and comes back to the page the form names.
func (s *Server) appControl(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.fail(w, r, false, s.deployUnavailable())
		return
	}
	id := r.PathValue("id")
	env, action := r.PostFormValue("environment"), r.PostFormValue("action")
	if env == "" {
		env = deploy.Production
	}
	back := "/apps/" + id + "/running?environment=" + url.QueryEscape(env)
	if r.PostFormValue("back") == "app" {
		back = "/apps/" + id
	}
	if _, err := s.DB.GetApp(r.Context(), id); err != nil {
		s.fail(w, r, false, err)
		return
	}
	if _, err := s.Deploy.Control(r.Context(), p, id, env, action, s.meta(r)); err != nil {
		s.controlFailed(w, r, back, err)
		return
	}
	done := map[string]string{deploy.ActionStart: "started", deploy.ActionStop: "stopped", deploy.ActionRestart: "restarted"}[action]
	s.redirect(w, r, back, "The "+env+" containers were "+done+".")
}

// controlFailed goes back to the page with the error as its one-time
// message.
func (s *Server) controlFailed(w http.ResponseWriter, r *http.Request, to string, err error) {
	s.logAgentError(r, "app control", err)
	s.redirect(w, r, to, "Not done: "+sentence(apperr.MessageOf(err)))
}
