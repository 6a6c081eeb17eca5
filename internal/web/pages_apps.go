package web

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// The pages of apps and git credentials: lists, add forms, settings, env
// keys (never values), push-to-deploy URL and secret (shown once), and
// repository checks. Secret fields are never echoed back into a form.

// appStatusClass names the colour of an app's status.
func appStatusClass(status string) string {
	switch status {
	case store.AppRunning:
		return "st-online"
	case store.AppFailed:
		return "st-error"
	case store.AppStopped:
		return "st-offline"
	}
	return "st-pending"
}

type appRow struct {
	*store.App
	ServerName  string
	StatusClass string
}

// serverNames maps server ids to names.
func (s *Server) serverNames(r *http.Request) (map[string]string, []*store.Server, error) {
	list, err := s.DB.ListServers(r.Context())
	if err != nil {
		return nil, nil, err
	}
	names := make(map[string]string, len(list))
	for _, x := range list {
		names[x.ID] = x.Name
	}
	return names, list, nil
}

func (s *Server) appsPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Apps")
	pg.Nav = "apps"
	list, err := s.DB.ListApps(r.Context(), "")
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	names, _, err := s.serverNames(r)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	rows := make([]appRow, 0, len(list))
	for _, a := range list {
		rows = append(rows, appRow{App: a, ServerName: names[a.ServerID], StatusClass: appStatusClass(a.Status)})
	}
	pg.Data = rows
	s.render(w, r, "apps", pg)
}

// appFormData is what the add and edit forms of an app choose from.
type appFormData struct {
	Servers     []*store.Server
	Credentials []*store.GitCredential
}

func (s *Server) appFormChoices(r *http.Request) (*appFormData, error) {
	_, servers, err := s.serverNames(r)
	if err != nil {
		return nil, err
	}
	creds, err := s.DB.ListGitCredentials(r.Context())
	if err != nil {
		return nil, err
	}
	return &appFormData{Servers: servers, Credentials: creds}, nil
}

// appFormFields are the app settings a form may echo back: none is secret.
var appFormFields = []string{"server_id", "name", "slug", "git_repository", "git_branch", "git_credentials_id", "deploy_path",
	"docker_compose_file", "primary_domain", "staging_domain", "keep_releases"}

// echoForm keeps the named fields of the submitted form, and only those.
func echoForm(r *http.Request, fields []string) url.Values {
	out := url.Values{}
	for _, f := range fields {
		if v, ok := r.PostForm[f]; ok {
			out[f] = v
		}
	}
	return out
}

func (s *Server) appNewPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderAppNew(w, r, nil)
}

func (s *Server) renderAppNew(w http.ResponseWriter, r *http.Request, formErr error) {
	pg := s.newPage(w, r, "Add an app")
	pg.Nav = "apps"
	d, err := s.appFormChoices(r)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg.Data = d
	if formErr != nil {
		pg.Form = echoForm(r, appFormFields) // never the env values
		s.renderForm(w, r, "app_new", pg, formErr)
		return
	}
	pg.Form = url.Values{"git_branch": {"main"}, "docker_compose_file": {"docker-compose.yml"}, "keep_releases": {"5"}}
	if id := r.URL.Query().Get("server_id"); id != "" {
		pg.Form.Set("server_id", id)
	}
	s.render(w, r, "app_new", pg)
}

// formKeep reads keep_releases: empty is the default (0), anything else
// that is not a number becomes -1, which validation refuses.
func formKeep(v string) int {
	if strings.TrimSpace(v) == "" {
		return 0
	}
	return formInt(v)
}

// parseEnvLines reads KEY=value lines, as a .env file holds them. Blank
// lines and lines starting with # are skipped. Errors name the line, never
// its text, which may hold a secret.
func parseEnvLines(text string) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r") // browsers send textareas with CRLF
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, apperr.New(apperr.Invalid, "line %d is not KEY=value", i+1)
		}
		if deploy.ValidEnvKey(k) != nil {
			return nil, apperr.New(apperr.Invalid, "line %d: the name before = must be letters, digits and _, not starting with a digit, "+
				"and not start with COMPOSE_ or DOCKER_", i+1)
		}
		if _, dup := out[k]; dup {
			return nil, apperr.New(apperr.Invalid, "line %d sets %s a second time", i+1, k)
		}
		if err := deploy.ValidEnvValue(k, v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func (s *Server) appCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	f := r.PostForm
	in := deploy.AppInput{ServerID: f.Get("server_id"), Name: f.Get("name"), Slug: strings.TrimSpace(f.Get("slug")),
		GitRepository: f.Get("git_repository"), GitBranch: f.Get("git_branch"), GitCredentialsID: f.Get("git_credentials_id"),
		DeployPath: f.Get("deploy_path"), DockerComposeFile: f.Get("docker_compose_file"), PrimaryDomain: f.Get("primary_domain"),
		StagingDomain: f.Get("staging_domain"), KeepReleases: formKeep(f.Get("keep_releases"))}
	if in.EnvVars, err = parseEnvLines(f.Get("env")); err != nil {
		s.renderAppNew(w, r, err)
		return
	}
	a, secret, err := svc.CreateApp(r.Context(), p, in, s.meta(r))
	if err != nil {
		s.renderAppNew(w, r, err)
		return
	}
	pg := s.newPage(w, r, a.Name)
	pg.Flash = "App added. Copy its push-to-deploy secret now: it is not shown again."
	s.renderApp(w, r, pg, a.ID, secret, nil)
}

// envScopeView is one env scope on the app page: its keys, never values.
type envScopeView struct {
	Scope string
	Keys  []string
}

// appData is the app page.
type appData struct {
	appFormData
	App         *store.App
	ServerName  string
	Credential  *store.GitCredential // nil for a public repository
	StatusClass string
	HookURL     string
	// NewSecret is the push-to-deploy secret, shown once: right after the
	// app was added or the secret replaced.
	NewSecret string
	Env       []envScopeView
	Scopes    []string
}

func (s *Server) appPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderApp(w, r, nil, r.PathValue("id"), "", nil)
}

// renderApp shows an app's page; after formErr it keeps what was typed in
// the settings form.
func (s *Server) renderApp(w http.ResponseWriter, r *http.Request, pg *page, id, newSecret string, formErr error) {
	ctx := r.Context()
	a, err := s.DB.GetApp(ctx, id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	choices, err := s.appFormChoices(r)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	if pg == nil {
		pg = s.newPage(w, r, a.Name)
	}
	pg.Title, pg.Nav = a.Name, "apps"
	d := &appData{appFormData: *choices, App: a, StatusClass: appStatusClass(a.Status), HookURL: s.hookURL(a), NewSecret: newSecret,
		Scopes: deploy.EnvScopes()}
	for _, x := range choices.Servers {
		if x.ID == a.ServerID {
			d.ServerName = x.Name
		}
	}
	for _, c := range choices.Credentials {
		if c.ID == a.GitCredentialsID {
			d.Credential = c
		}
	}
	keys, err := s.appEnvKeys(r, id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	for _, scope := range deploy.EnvScopes() {
		d.Env = append(d.Env, envScopeView{Scope: scope, Keys: keys[scope]})
	}
	pg.Data = d
	if formErr != nil {
		pg.Form = echoForm(r, appFormFields)
		s.renderForm(w, r, "app", pg, formErr)
		return
	}
	pg.Form = url.Values{"name": {a.Name}, "git_repository": {a.GitRepository}, "git_branch": {a.GitBranch},
		"git_credentials_id": {a.GitCredentialsID}, "deploy_path": {a.DeployPath}, "docker_compose_file": {a.DockerComposeFile},
		"primary_domain": {a.PrimaryDomain}, "staging_domain": {a.StagingDomain}, "keep_releases": {strconv.Itoa(a.KeepReleases)}}
	s.render(w, r, "app", pg)
}

func (s *Server) appUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	svc, err := s.deploySvc()
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	f := r.PostForm
	str := func(k string) *string { v := f.Get(k); return &v }
	keep := formInt(f.Get("keep_releases"))
	in := deploy.AppPatch{Name: str("name"), GitRepository: str("git_repository"), GitBranch: str("git_branch"),
		GitCredentialsID: str("git_credentials_id"), DeployPath: str("deploy_path"), DockerComposeFile: str("docker_compose_file"),
		PrimaryDomain: str("primary_domain"), StagingDomain: str("staging_domain"), KeepReleases: &keep}
	if _, err := svc.UpdateApp(r.Context(), p, id, in, s.meta(r)); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			s.fail(w, r, false, err)
			return
		}
		s.renderApp(w, r, nil, id, "", err)
		return
	}
	s.redirect(w, r, "/apps/"+id, "Settings saved.")
}

// appEnvSubmit sets variables from KEY=value lines, or unsets the keys
// named, in one scope. Values never come back: errors go to the page as a
// message that names lines and keys only.
func (s *Server) appEnvSubmit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	svc, err := s.deploySvc()
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	if _, err := s.DB.GetApp(r.Context(), id); err != nil {
		s.fail(w, r, false, err)
		return
	}
	back := "/apps/" + id + "#env"
	scope := r.PostFormValue("scope")
	var set map[string]string
	var unset []string
	switch r.PostFormValue("action") {
	case "set":
		if set, err = parseEnvLines(r.PostFormValue("vars")); err == nil && len(set) == 0 {
			err = apperr.New(apperr.Invalid, "type one KEY=value a line")
		}
	case "unset":
		unset = r.PostForm["key"]
	default:
		err = apperr.New(apperr.Invalid, "the form asks neither to set nor to unset")
	}
	if err == nil {
		_, err = svc.SetEnv(r.Context(), p, id, scope, set, unset, s.meta(r))
	}
	if err != nil {
		if statusOf(err) >= 500 {
			s.fail(w, r, false, err)
			return
		}
		s.redirect(w, r, back, shortenFlash("Not saved: "+sentence(apperr.MessageOf(err)), 400))
		return
	}
	if set != nil {
		s.redirect(w, r, back, shortenFlash("Set in "+scope+": "+strings.Join(slices.Sorted(maps.Keys(set)), ", ")+".", 400))
		return
	}
	s.redirect(w, r, back, shortenFlash("Removed from "+scope+": "+strings.Join(unset, ", ")+".", 400))
}

func (s *Server) appRotateHook(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	svc, err := s.deploySvc()
	var secret string
	if err == nil {
		secret, err = svc.RotateHookSecret(r.Context(), p, id, s.meta(r))
	}
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg := s.newPage(w, r, "")
	pg.Flash = "New push-to-deploy secret made. Copy it now: it is not shown again, and deliveries signed with the old one are refused."
	s.renderApp(w, r, pg, id, secret, nil)
}

// checkMessage says what a repository check found, for a page.
func checkMessage(c *deploy.GitCheck, branch string) string {
	if c.OK {
		if c.Commit != "" {
			return "The server reached the repository: " + branch + " is at " + wire.ShortCommit(c.Commit) + "."
		}
		return "The server reached the repository."
	}
	return "The server could not reach the repository: " + sentence(c.Error)
}

func (s *Server) appTest(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	svc, err := s.deploySvc()
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	a, err := s.DB.GetApp(r.Context(), id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	res, err := svc.TestApp(r.Context(), p, id, s.meta(r))
	if err != nil {
		if statusOf(err) >= 500 {
			s.fail(w, r, false, err)
			return
		}
		s.redirect(w, r, "/apps/"+id, shortenFlash("Not checked: "+sentence(apperr.MessageOf(err)), 400))
		return
	}
	s.redirect(w, r, "/apps/"+id, shortenFlash(checkMessage(res, a.GitBranch), 400))
}

func (s *Server) appDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	var a *store.App
	if err == nil {
		a, err = s.DB.GetApp(r.Context(), r.PathValue("id"))
	}
	if err == nil {
		err = svc.DeleteApp(r.Context(), p, a.ID, s.meta(r))
	}
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.redirect(w, r, "/apps", "App "+a.Name+" removed from the panel. Nothing on its server was changed: stop its containers there if they should not run.")
}

// Git credentials.

func (s *Server) credentialsPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Git credentials")
	pg.Nav = "apps"
	list, err := s.DB.ListGitCredentials(r.Context())
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg.Data = list
	s.render(w, r, "credentials", pg)
}

// credentialFormFields are the fields of a credential form that may be
// echoed back: never the private key, token or password.
var credentialFormFields = []string{"name", "type", "known_hosts", "host", "username"}

func (s *Server) credentialNewPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Add a git credential")
	pg.Nav = "apps"
	pg.Data = deploy.CredentialTypes()
	pg.Form = url.Values{"type": {store.GitSSHKey}}
	s.render(w, r, "credential_new", pg)
}

// credentialSecretFields reads the secret fields of a form for a type,
// ignoring those of the other types (one form shows all of them).
func credentialSecretFields(f url.Values, typ string) (generate bool, key, user, token, password string) {
	switch typ {
	case store.GitSSHKey:
		key = f.Get("private_key")
		return strings.TrimSpace(key) == "", key, "", "", ""
	case store.GitToken:
		return false, "", strings.TrimSpace(f.Get("username")), strings.TrimSpace(f.Get("token")), ""
	case store.GitBasic:
		return false, "", strings.TrimSpace(f.Get("username")), "", f.Get("password")
	}
	return false, "", "", "", ""
}

func (s *Server) credentialCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	svc, err := s.deploySvc()
	var c *store.GitCredential
	if err == nil {
		f := r.PostForm
		typ := f.Get("type")
		in := deploy.CredentialInput{Name: f.Get("name"), Type: typ}
		in.Generate, in.PrivateKey, in.Username, in.Token, in.Password = credentialSecretFields(f, typ)
		if typ == store.GitSSHKey {
			in.KnownHosts = f.Get("known_hosts")
		} else {
			in.Host = strings.TrimSpace(f.Get("host"))
		}
		c, err = svc.CreateCredential(r.Context(), p, in, s.meta(r))
	}
	if err != nil {
		pg := s.newPage(w, r, "Add a git credential")
		pg.Nav = "apps"
		pg.Data = deploy.CredentialTypes()
		pg.Form = echoForm(r, credentialFormFields)
		s.renderForm(w, r, "credential_new", pg, err)
		return
	}
	msg := "Credential added."
	if c.Type == store.GitSSHKey {
		msg = "Credential added. Add its public key below to the repository as a read-only deploy key."
		if c.KnownHosts == "" {
			msg += " Then pin the git server's host keys (known_hosts) before an ssh repository can use it."
		}
	}
	s.redirect(w, r, "/credentials/"+c.ID, msg)
}

// credentialData is a credential's page.
type credentialData struct {
	Cred       *store.GitCredential
	KnownHosts []deploy.KnownHost
	Apps       []*store.App
	Servers    []*store.Server
	// Check is the outcome of the repository check just run.
	Check    *deploy.GitCheck
	CheckMsg string
}

func (s *Server) credentialPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderCredential(w, r, r.PathValue("id"), nil, nil, nil)
}

// renderCredential shows a credential; form is what the page's forms show
// (nil: the credential's own values), check a repository check's outcome,
// formErr an error to show.
func (s *Server) renderCredential(w http.ResponseWriter, r *http.Request, id string, form url.Values, check *deploy.GitCheck, formErr error) {
	ctx := r.Context()
	c, err := s.DB.GetGitCredential(ctx, id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	_, servers, err := s.serverNames(r)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	apps, err := s.DB.ListApps(ctx, "")
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	d := &credentialData{Cred: c, KnownHosts: deploy.KnownHostKeys(c.KnownHosts), Servers: servers, Check: check}
	for _, a := range apps {
		if a.GitCredentialsID == c.ID {
			d.Apps = append(d.Apps, a)
		}
	}
	pg := s.newPage(w, r, c.Name)
	pg.Nav = "apps"
	pg.Data = d
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["name"]; !ok {
		form.Set("name", c.Name)
	}
	if _, ok := form["known_hosts"]; !ok {
		form.Set("known_hosts", c.KnownHosts)
	}
	if _, ok := form["host"]; !ok {
		form.Set("host", c.Host)
	}
	if check != nil {
		d.CheckMsg = checkMessage(check, form.Get("git_branch"))
	}
	pg.Form = form
	if formErr != nil {
		s.renderForm(w, r, "credential", pg, formErr)
		return
	}
	s.render(w, r, "credential", pg)
}

func (s *Server) credentialUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	svc, err := s.deploySvc()
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	c, err := s.DB.GetGitCredential(r.Context(), id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	f := r.PostForm
	name := f.Get("name")
	in := deploy.CredentialPatch{Name: &name}
	if c.Type == store.GitSSHKey {
		kh := f.Get("known_hosts")
		in.KnownHosts = &kh
	} else if h := strings.TrimSpace(f.Get("host")); h != "" {
		// Only admins are offered the field; the service refuses a changed
		// host from anyone else. Left empty, the host stays as it is.
		in.Host = &h
	}
	switch c.Type {
	case store.GitSSHKey:
		if f.Get("generate") == "on" {
			in.Generate = true
		} else if k := f.Get("private_key"); strings.TrimSpace(k) != "" {
			in.PrivateKey = &k
		}
	case store.GitToken:
		if t := strings.TrimSpace(f.Get("token")); t != "" {
			u := strings.TrimSpace(f.Get("username"))
			in.Token, in.Username = &t, &u
		}
	case store.GitBasic:
		if pw := f.Get("password"); pw != "" {
			u := strings.TrimSpace(f.Get("username"))
			in.Password, in.Username = &pw, &u
		}
	}
	up, err := svc.UpdateCredential(r.Context(), p, id, in, s.meta(r))
	if err != nil {
		s.renderCredential(w, r, id, echoForm(r, credentialFormFields), nil, err)
		return
	}
	msg := "Credential saved."
	if up.Host != c.Host {
		msg = "Credential saved: it may now be sent to " + up.Host + " and no other host."
	}
	if in.Generate || in.PrivateKey != nil {
		msg = "Credential saved with its new key: replace the deploy key on the git server with the public key below."
	} else if in.Token != nil || in.Password != nil {
		msg = "Credential saved with its new secret."
	}
	s.redirect(w, r, "/credentials/"+id, msg)
}

func (s *Server) credentialDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	svc, err := s.deploySvc()
	var c *store.GitCredential
	if err == nil {
		c, err = s.DB.GetGitCredential(r.Context(), id)
	}
	if err == nil {
		err = svc.DeleteCredential(r.Context(), p, id, s.meta(r))
		if apperr.Is(err, apperr.Conflict) {
			s.redirect(w, r, "/credentials/"+id, shortenFlash("Not deleted: "+sentence(apperr.MessageOf(err)), 400))
			return
		}
	}
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.redirect(w, r, "/credentials", "Git credential "+c.Name+" deleted.")
}

// credentialTest checks a repository with the credential from a server, and
// shows the outcome on the credential's page.
func (s *Server) credentialTest(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	svc, err := s.deploySvc()
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	f := r.PostForm
	form := echoForm(r, []string{"server_id", "git_repository", "git_branch"})
	res, err := svc.Test(r.Context(), p, id, f.Get("server_id"), strings.TrimSpace(f.Get("git_repository")), strings.TrimSpace(f.Get("git_branch")), s.meta(r))
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			s.fail(w, r, false, err)
			return
		}
		s.renderCredential(w, r, id, form, nil, err)
		return
	}
	s.renderCredential(w, r, id, form, res, nil)
}

// ShortCommit is the app's production commit, abbreviated.
func (r appRow) ShortCommit() string { return wire.ShortCommit(r.CurrentCommit) }

// ShortCommit is the app's production commit, abbreviated.
func (d *appData) ShortCommit() string { return wire.ShortCommit(d.App.CurrentCommit) }
