package web

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
)

type usersData struct {
	Users   []*store.User
	Invites []*store.Invite
	Roles   []auth.Role
	Now     time.Time
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderUsers(w, r, nil)
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, err error) {
	pg := s.newPage(w, r, "Users")
	pg.Nav = "users"
	d := &usersData{Roles: auth.Roles, Now: s.DB.Now()}
	var lerr error
	if d.Users, lerr = s.Auth.Users(r.Context()); lerr == nil {
		d.Invites, lerr = s.Auth.Invites(r.Context(), false)
	}
	if lerr != nil {
		s.fail(w, r, false, lerr)
		return
	}
	pg.Data = d
	if err != nil {
		s.renderForm(w, r, "users", pg, err)
		return
	}
	s.render(w, r, "users", pg)
}

func (s *Server) userRole(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	role, err := auth.ParseRole(r.PostFormValue("role"))
	if err == nil {
		_, err = s.Auth.ChangeRole(r.Context(), p, r.PathValue("id"), role, s.meta(r))
	}
	if err != nil {
		s.renderUsers(w, r, err)
		return
	}
	s.redirect(w, r, "/admin/users", "Role changed.")
}

func (s *Server) userDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.DeleteUser(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.renderUsers(w, r, err)
		return
	}
	s.redirect(w, r, "/admin/users", "User deleted.")
}

func (s *Server) inviteCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	role, err := auth.ParseRole(r.PostFormValue("role"))
	var inv *store.Invite
	if err == nil {
		inv, err = s.Auth.Invite(r.Context(), p, r.PostFormValue("email"), role, s.meta(r))
	}
	if err != nil {
		s.renderUsers(w, r, err)
		return
	}
	s.redirect(w, r, "/admin/users", "Invitation sent to "+inv.Email+". The link works for 7 days.")
}

func (s *Server) inviteRevoke(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.RevokeInvite(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.renderUsers(w, r, err)
		return
	}
	s.redirect(w, r, "/admin/users", "Invitation revoked.")
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Settings")
	pg.Nav = "settings"
	req, err := s.Auth.RequireTwoFactor(r.Context())
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg.Data = req
	s.render(w, r, "settings", pg)
}

func (s *Server) settingsSubmit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	on := r.PostFormValue("require_two_factor") == "on"
	if err := s.Auth.SetRequireTwoFactor(r.Context(), p, on, s.meta(r)); err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.redirect(w, r, "/admin/settings", "Settings saved.")
}

// listQuery reads the filters common to the security event and activity
// lists. Unknown values simply match nothing.
type listQuery struct {
	Before string
	Limit  int
	Values url.Values
}

func readListQuery(r *http.Request) listQuery {
	q := r.URL.Query()
	lim, _ := strconv.Atoi(q.Get("limit"))
	if lim <= 0 || lim > 200 {
		lim = 50
	}
	return listQuery{Before: q.Get("before"), Limit: lim, Values: q}
}

func securityFilter(r *http.Request) (store.SecurityEventFilter, error) {
	lq := readListQuery(r)
	f := store.SecurityEventFilter{EventType: lq.Values.Get("type"), Severity: lq.Values.Get("severity"),
		UserID: lq.Values.Get("user_id"), Before: lq.Before, Limit: lq.Limit}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := lq.Values.Get(name); v != "" {
			t, err := parseTimeParam(v)
			if err != nil {
				return f, err
			}
			*dst = t
		}
	}
	return f, nil
}

type securityData struct {
	Events     []store.SecurityEvent
	Types      []string
	Severities []string
	Query      url.Values
	Next       string
}

func (s *Server) securityEventsPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Security events")
	pg.Nav = "security"
	f, err := securityFilter(r)
	var events []store.SecurityEvent
	if err == nil {
		events, err = s.DB.ListSecurityEvents(r.Context(), f)
	}
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.withEmails(r, pg)
	d := &securityData{Events: events, Types: audit.EventTypes(),
		Severities: []string{store.SeverityInfo, store.SeverityWarning, store.SeverityCritical}, Query: r.URL.Query()}
	if len(events) == f.Limit {
		d.Next = nextPage(r.URL.Query(), events[len(events)-1].ID)
	}
	pg.Data = d
	s.render(w, r, "security_events", pg)
}

type activityData struct {
	Entries []store.Activity
	Query   url.Values
	Next    string
	ShowIP  bool
}

// accountSubjects are the activity entries about accounts (who exists, with
// which role and email) and other admin settings such as webhook targets. They
// are admin business, so other roles do not see these entries.
var accountSubjects = []string{"User", "Invite", "ApiToken", "Setting", "WebhookTarget"}

func activityFilter(r *http.Request, p *auth.Principal) store.ActivityFilter {
	lq := readListQuery(r)
	f := store.ActivityFilter{UserID: lq.Values.Get("user_id"), SubjectType: lq.Values.Get("subject_type"),
		SubjectID: lq.Values.Get("subject_id"), Action: lq.Values.Get("action"), Before: lq.Before, Limit: lq.Limit}
	if p.Role != auth.Admin {
		f.ExcludeSubjectTypes = accountSubjects
	}
	return f
}

// activityPage shows the activity log. Addresses are shown to admins only.
func (s *Server) activityPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Activity")
	pg.Nav = "activity"
	f := activityFilter(r, p)
	entries, err := s.DB.ListActivity(r.Context(), f)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	if p.Role == auth.Admin {
		s.withEmails(r, pg) // other roles see ids: who has an account is admin business
	}
	d := &activityData{Entries: entries, Query: r.URL.Query(), ShowIP: p.Role == auth.Admin}
	if len(entries) == f.Limit {
		d.Next = nextPage(r.URL.Query(), entries[len(entries)-1].ID)
	}
	pg.Data = d
	s.render(w, r, "activity", pg)
}

func nextPage(q url.Values, before string) string {
	n := url.Values{}
	for k, v := range q {
		n[k] = v
	}
	n.Set("before", before)
	return "?" + n.Encode()
}
