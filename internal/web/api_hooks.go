package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/wire"
)

// Push-to-deploy deliveries, and the running-app controls' API.

func (s *Server) deployUnavailable() error {
	return apperr.New(apperr.Unavailable, "apps and deployments are not available on this panel")
}

// deployHook receives a push-to-deploy delivery. The route is public: the
// hook's secret is the authentication, checked by deploy.HandlePush.
func (s *Server) deployHook(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	if s.Deploy == nil {
		s.apiError(w, r, s.deployUnavailable())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, deploy.MaxHookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": map[string]string{
				"code": string(apperr.Invalid), "message": "the payload is larger than " + strconv.Itoa(deploy.MaxHookBody) + " bytes"}})
			return
		}
		s.apiError(w, r, apperr.New(apperr.Invalid, "the payload could not be read"))
		return
	}
	out, err := s.Deploy.HandlePush(r.Context(), r.PathValue("hookID"), r.Header, body, s.clientIP(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	res := map[string]string{"outcome": out.Result, "message": out.Message}
	if out.DeploymentID != "" {
		res["deployment_id"] = out.DeploymentID
	}
	if out.Ignored != "" {
		res["ignored"] = out.Ignored
	}
	writeJSON(w, out.Status, res)
}

type hookDeliveryJSON struct {
	ID           string    `json:"id"`
	DeliveryID   string    `json:"delivery_id"`
	Provider     string    `json:"provider"`
	Event        string    `json:"event"`
	Outcome      string    `json:"outcome"`
	DeploymentID *string   `json:"deployment_id"`
	CreatedAt    time.Time `json:"created_at"`
}

func (s *Server) apiAppHookDeliveries(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	if _, err := s.DB.GetApp(r.Context(), id); err != nil {
		s.apiError(w, r, err)
		return
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			s.apiError(w, r, apperr.New(apperr.Invalid, "limit must be 1 to 500"))
			return
		}
		limit = n
	}
	ds, err := s.DB.DeployHookDeliveries(r.Context(), id, limit)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[hookDeliveryJSON]{Items: []hookDeliveryJSON{}}
	for _, d := range ds {
		j := hookDeliveryJSON{ID: d.ID, DeliveryID: d.DeliveryID, Provider: d.Provider, Event: d.Event, Outcome: d.Outcome, CreatedAt: d.CreatedAt}
		if d.DeploymentID != "" {
			j.DeploymentID = &d.DeploymentID
		}
		out.Items = append(out.Items, j)
	}
	writeJSON(w, http.StatusOK, out)
}

type projectStatusJSON struct {
	AppID       string               `json:"app_id"`
	Environment string               `json:"environment"`
	Project     string               `json:"project"`
	Services    []wire.ServiceStatus `json:"services"`
}

func toProjectStatusJSON(appID, env string, st *wire.ProjectStatus) *projectStatusJSON {
	if st == nil {
		return nil
	}
	return &projectStatusJSON{AppID: appID, Environment: env, Project: st.Project, Services: st.Services}
}

// environmentParam is ?environment=, production by default.
func environmentParam(r *http.Request) string {
	if env := r.URL.Query().Get("environment"); env != "" {
		return env
	}
	return deploy.Production
}

func (s *Server) apiAppStatus(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.apiError(w, r, s.deployUnavailable())
		return
	}
	env := environmentParam(r)
	st, err := s.Deploy.Status(r.Context(), r.PathValue("id"), env)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toProjectStatusJSON(r.PathValue("id"), env, st))
}

// apiAppControl starts, stops or restarts an environment's containers. The
// environment comes from ?environment= or a JSON body {"environment": ...}.
func (s *Server) apiAppControl(action string) func(http.ResponseWriter, *http.Request, *auth.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if s.Deploy == nil {
			s.apiError(w, r, s.deployUnavailable())
			return
		}
		env := r.URL.Query().Get("environment")
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
		if err != nil {
			s.apiError(w, r, apperr.New(apperr.Invalid, "the request body is larger than %d bytes", maxJSONBody))
			return
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			var in struct {
				Environment string `json:"environment"`
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil || dec.More() {
				s.apiError(w, r, apperr.New(apperr.Invalid, `the request body must be empty or {"environment": "production" | "staging"}`))
				return
			}
			if env != "" && in.Environment != "" && env != in.Environment {
				s.apiError(w, r, apperr.New(apperr.Invalid, "the query and the body name different environments"))
				return
			}
			if env == "" {
				env = in.Environment
			}
		}
		if env == "" {
			env = deploy.Production
		}
		st, err := s.Deploy.Control(r.Context(), p, r.PathValue("id"), env, action, s.meta(r))
		if err != nil {
			s.apiError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			AppID       string             `json:"app_id"`
			Environment string             `json:"environment"`
			Action      string             `json:"action"`
			Status      *projectStatusJSON `json:"status"`
		}{r.PathValue("id"), env, action, toProjectStatusJSON(r.PathValue("id"), env, st)})
	}
}

func (s *Server) apiAppLogs(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.apiError(w, r, s.deployUnavailable())
		return
	}
	q := r.URL.Query()
	tail, err := deploy.ParseLogTail(q.Get("tail"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	env := environmentParam(r)
	logs, err := s.Deploy.Logs(r.Context(), r.PathValue("id"), env, q.Get("service"), tail)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		AppID       string   `json:"app_id"`
		Environment string   `json:"environment"`
		Service     string   `json:"service,omitempty"`
		Tail        int      `json:"tail"`
		Lines       []string `json:"lines"`
		Truncated   bool     `json:"truncated"`
	}{r.PathValue("id"), env, q.Get("service"), tail, logs.Lines, logs.Truncated})
}
