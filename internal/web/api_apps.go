package web

import (
	"net/http"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/store"
)

// The API of git credentials and apps. Secrets are write-only: no answer
// carries a private key, token, password, env value or push-to-deploy
// secret, except the push-to-deploy secret in the answers that make it
// (create, rotate-hook-secret).

// maxAppBody bounds the bodies that may carry env sets: an app with its env
// sets, or an env change (values up to 32 KiB each).
const maxAppBody = 1 << 20

// maskedValue stands for every env value in answers.
const maskedValue = "••••"

// credentialJSON is a git credential as the API shows it: never its secret.
type credentialJSON struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	PublicKey  *string   `json:"public_key"`
	KnownHosts *string   `json:"known_hosts"`
	Host       *string   `json:"host"`
	Apps       int       `json:"apps"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toCredentialJSON(c *store.GitCredential) credentialJSON {
	return credentialJSON{ID: c.ID, Name: c.Name, Type: c.Type, PublicKey: nullable(c.PublicKey), KnownHosts: nullable(c.KnownHosts),
		Host: nullable(c.Host), Apps: c.Apps, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

// appJSON is an app as the API shows it: its env values and push-to-deploy
// secret are not in it.
type appJSON struct {
	ID                string    `json:"id"`
	ServerID          string    `json:"server_id"`
	Name              string    `json:"name"`
	Slug              string    `json:"slug"`
	GitRepository     string    `json:"git_repository"`
	GitBranch         string    `json:"git_branch"`
	GitCredentialsID  *string   `json:"git_credentials_id"`
	DeployPath        string    `json:"deploy_path"`
	DockerComposeFile string    `json:"docker_compose_file"`
	PrimaryDomain     *string   `json:"primary_domain"`
	StagingDomain     *string   `json:"staging_domain"`
	Status            string    `json:"status"`
	CurrentCommit     *string   `json:"current_commit"`
	KeepReleases      int       `json:"keep_releases"`
	HookURL           string    `json:"hook_url"`
	HasHookSecret     bool      `json:"has_hook_secret"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

func (s *Server) toAppJSON(a *store.App) appJSON {
	return appJSON{ID: a.ID, ServerID: a.ServerID, Name: a.Name, Slug: a.Slug, GitRepository: a.GitRepository, GitBranch: a.GitBranch,
		GitCredentialsID: nullable(a.GitCredentialsID), DeployPath: a.DeployPath, DockerComposeFile: a.DockerComposeFile,
		PrimaryDomain: nullable(a.PrimaryDomain), StagingDomain: nullable(a.StagingDomain), Status: a.Status,
		CurrentCommit: nullable(a.CurrentCommit), KeepReleases: a.KeepReleases, HookURL: s.hookURL(a), HasHookSecret: a.HasHookSecret,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

// hookURL is an app's push-to-deploy URL.
func (s *Server) hookURL(a *store.App) string {
	if s.Deploy != nil {
		return s.Deploy.HookURL(a)
	}
	return ""
}

// deploySvc returns the deploy service, or an error when the panel was made
// without one.
func (s *Server) deploySvc() (*deploy.Service, error) {
	if s.Deploy == nil {
		return nil, s.deployUnavailable()
	}
	return s.Deploy, nil
}

// Git credentials.

func (s *Server) apiCredentials(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	list, err := s.DB.ListGitCredentials(r.Context())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := struct {
		Credentials []credentialJSON `json:"credentials"`
	}{Credentials: []credentialJSON{}}
	for _, c := range list {
		out.Credentials = append(out.Credentials, toCredentialJSON(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiCredentialCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in deploy.CredentialInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	c, err := svc.CreateCredential(r.Context(), p, in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toCredentialJSON(c))
}

func (s *Server) apiCredential(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	c, err := s.DB.GetGitCredential(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toCredentialJSON(c))
}

func (s *Server) apiCredentialUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in deploy.CredentialPatch
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	c, err := svc.UpdateCredential(r.Context(), p, r.PathValue("id"), in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toCredentialJSON(c))
}

func (s *Server) apiCredentialDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err == nil {
		err = svc.DeleteCredential(r.Context(), p, r.PathValue("id"), s.meta(r))
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiCredentialTest asks a server's agent to reach a repository with the
// credential (git ls-remote). A failed check is a 200 whose ok is false.
func (s *Server) apiCredentialTest(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in struct {
		ServerID      string `json:"server_id"`
		GitRepository string `json:"git_repository"`
		GitBranch     string `json:"git_branch"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	if in.ServerID == "" || in.GitRepository == "" {
		s.apiError(w, r, apperr.New(apperr.Invalid, "give server_id and git_repository (and git_branch to check it exists)"))
		return
	}
	res, err := svc.Test(r.Context(), p, r.PathValue("id"), in.ServerID, in.GitRepository, in.GitBranch, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Apps.

func (s *Server) apiApps(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	list, err := s.DB.ListApps(r.Context(), r.URL.Query().Get("server_id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := struct {
		Apps []appJSON `json:"apps"`
	}{Apps: []appJSON{}}
	for _, a := range list {
		out.Apps = append(out.Apps, s.toAppJSON(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiAppCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in deploy.AppInput
	if err := decodeJSONMax(w, r, &in, maxAppBody); err != nil {
		s.apiError(w, r, err)
		return
	}
	a, secret, err := svc.CreateApp(r.Context(), p, in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		App        appJSON `json:"app"`
		HookSecret string  `json:"hook_secret"`
	}{s.toAppJSON(a), secret})
}

func (s *Server) apiApp(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	a, err := s.DB.GetApp(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.toAppJSON(a))
}

func (s *Server) apiAppUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in deploy.AppPatch
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	a, err := svc.UpdateApp(r.Context(), p, r.PathValue("id"), in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.toAppJSON(a))
}

func (s *Server) apiAppDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err == nil {
		err = svc.DeleteApp(r.Context(), p, r.PathValue("id"), s.meta(r))
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// envEntryJSON is a variable as the API shows it: its value always masked.
type envEntryJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// appEnvKeys returns the keys of each env scope of an app.
func (s *Server) appEnvKeys(r *http.Request, id string) (map[string][]string, error) {
	if _, err := s.DB.GetApp(r.Context(), id); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, scope := range deploy.EnvScopes() {
		keys, err := s.DB.AppEnvKeys(r.Context(), id, scope)
		if err != nil {
			return nil, err
		}
		out[scope] = keys
	}
	return out, nil
}

func (s *Server) apiAppEnv(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	keys, err := s.appEnvKeys(r, r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := map[string][]envEntryJSON{}
	for scope, ks := range keys {
		entries := []envEntryJSON{}
		for _, k := range ks {
			entries = append(entries, envEntryJSON{Key: k, Value: maskedValue})
		}
		out[scope] = entries
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiAppEnvUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in struct {
		Set   map[string]string `json:"set"`
		Unset []string          `json:"unset"`
	}
	if err := decodeJSONMax(w, r, &in, maxAppBody); err != nil {
		s.apiError(w, r, err)
		return
	}
	keys, err := svc.SetEnv(r.Context(), p, r.PathValue("id"), r.PathValue("scope"), in.Set, in.Unset, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	if keys == nil {
		keys = []string{}
	}
	writeJSON(w, http.StatusOK, map[string][]string{"keys": keys})
}

// apiAppTest checks that the app's server can reach its repository and
// branch. A failed check is a 200 whose ok is false.
func (s *Server) apiAppTest(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	var res *deploy.GitCheck
	if err == nil {
		res, err = svc.TestApp(r.Context(), p, r.PathValue("id"), s.meta(r))
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) apiAppRotateHookSecret(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	var secret string
	if err == nil {
		secret, err = svc.RotateHookSecret(r.Context(), p, r.PathValue("id"), s.meta(r))
	}
	var a *store.App
	if err == nil {
		a, err = s.DB.GetApp(r.Context(), r.PathValue("id"))
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"hook_url": s.hookURL(a), "hook_secret": secret})
}
