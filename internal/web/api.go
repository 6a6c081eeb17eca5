package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/store"
)

// maxJSONBody bounds request bodies of the API.
const maxJSONBody = 64 << 10

// decodeJSON reads a JSON object into v strictly: unknown fields, trailing
// data and oversized bodies are errors a client can act on.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONMax(w, r, v, maxJSONBody)
}

// decodeJSONMax is decodeJSON with its own size limit, for the few bodies
// that may be larger (an app with its env sets).
func decodeJSONMax(w http.ResponseWriter, r *http.Request, v any, max int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apperr.New(apperr.Invalid, "the request body is larger than %d bytes", max)
		}
		return apperr.New(apperr.Invalid, "the request body is not the JSON this endpoint takes: %s", jsonProblem(err))
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return apperr.New(apperr.Invalid, "the request body has data after the JSON object")
	}
	return nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "syntax error"
	case errors.As(err, &te):
		return "field " + te.Field + " has the wrong type"
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return err.Error() // json: unknown field "x"
}

func parseTimeParam(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, apperr.New(apperr.Invalid, "%q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", v)
	}
	return t, nil
}

type userJSON struct {
	ID               string    `json:"id"`
	Email            string    `json:"email"`
	Role             string    `json:"role"`
	Timezone         string    `json:"timezone"`
	TwoFactorEnabled bool      `json:"two_factor_enabled"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func toUserJSON(u *store.User) userJSON {
	return userJSON{ID: u.ID, Email: u.Email, Role: u.Role, Timezone: u.Timezone, TwoFactorEnabled: u.TwoFactorEnabled(),
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

type inviteJSON struct {
	ID         string     `json:"id"`
	Email      string     `json:"email"`
	Role       string     `json:"role"`
	Status     string     `json:"status"`
	InvitedBy  string     `json:"invited_by,omitempty"`
	ExpiresAt  time.Time  `json:"expires_at"`
	AcceptedAt *time.Time `json:"accepted_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	CreatedAt  time.Time  `json:"created_at"`
}

func inviteStatus(i *store.Invite, now time.Time) string {
	switch {
	case i.AcceptedAt != nil:
		return "accepted"
	case i.RevokedAt != nil:
		return "revoked"
	case !now.Before(i.ExpiresAt):
		return "expired"
	}
	return "pending"
}

func toInviteJSON(i *store.Invite, now time.Time) inviteJSON {
	return inviteJSON{ID: i.ID, Email: i.Email, Role: i.Role, Status: inviteStatus(i, now), InvitedBy: i.InvitedBy,
		ExpiresAt: i.ExpiresAt, AcceptedAt: i.AcceptedAt, RevokedAt: i.RevokedAt, CreatedAt: i.CreatedAt}
}

type tokenJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	Prefix     string     `json:"prefix"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	CreatedAt  time.Time  `json:"created_at"`
	// Token is the secret, present only in the response that creates it.
	Token string `json:"token,omitempty"`
}

func toTokenJSON(t *store.APIToken) tokenJSON {
	return tokenJSON{ID: t.ID, Name: t.Name, Role: t.Role, Prefix: t.Prefix, ExpiresAt: t.ExpiresAt,
		LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt, CreatedAt: t.CreatedAt}
}

type sessionJSON struct {
	ID             string    `json:"id"`
	IPAddress      string    `json:"ip_address"`
	UserAgent      string    `json:"user_agent"`
	Current        bool      `json:"current"`
	LastActivityAt time.Time `json:"last_activity_at"`
	ExpiresAt      time.Time `json:"expires_at"`
	CreatedAt      time.Time `json:"created_at"`
}

type securityEventJSON struct {
	ID        string         `json:"id"`
	EventType string         `json:"event_type"`
	Severity  string         `json:"severity"`
	UserID    string         `json:"user_id,omitempty"`
	ServerID  string         `json:"server_id,omitempty"`
	IPAddress string         `json:"ip_address,omitempty"`
	UserAgent string         `json:"user_agent,omitempty"`
	Details   map[string]any `json:"details"`
	CreatedAt time.Time      `json:"created_at"`
}

type activityJSON struct {
	ID          string                  `json:"id"`
	UserID      string                  `json:"user_id,omitempty"`
	Action      string                  `json:"action"`
	SubjectType string                  `json:"subject_type"`
	SubjectID   string                  `json:"subject_id"`
	Description string                  `json:"description"`
	Changes     map[string]store.Change `json:"changes"`
	IPAddress   string                  `json:"ip_address,omitempty"`
	CreatedAt   time.Time               `json:"created_at"`
	Hash        string                  `json:"hash"`
}

type listJSON[T any] struct {
	Items []T `json:"items"`
	// Next is the cursor for the following page (pass it as "before").
	Next string `json:"next,omitempty"`
}

func (s *Server) apiMe(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	writeJSON(w, http.StatusOK, struct {
		userJSON
		EffectiveRole string `json:"effective_role"`
		ViaToken      bool   `json:"via_token"`
	}{toUserJSON(p.User), string(p.Role), p.ViaToken()})
}

func (s *Server) apiUsers(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	us, err := s.Auth.Users(r.Context())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[userJSON]{Items: []userJSON{}}
	for _, u := range us {
		out.Items = append(out.Items, toUserJSON(u))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	u, err := s.Auth.User(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toUserJSON(u))
}

func (s *Server) apiUserUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in struct {
		Role string `json:"role"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	role, err := auth.ParseRole(in.Role)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	u, err := s.Auth.ChangeRole(r.Context(), p, r.PathValue("id"), role, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toUserJSON(u))
}

func (s *Server) apiUserDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.DeleteUser(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiInvites(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	invs, err := s.Auth.Invites(r.Context(), r.URL.Query().Get("status") == "pending")
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	now := s.DB.Now()
	out := listJSON[inviteJSON]{Items: []inviteJSON{}}
	for _, i := range invs {
		out.Items = append(out.Items, toInviteJSON(i, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiInviteCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	role, err := auth.ParseRole(in.Role)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	inv, err := s.Auth.Invite(r.Context(), p, in.Email, role, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toInviteJSON(inv, s.DB.Now()))
}

func (s *Server) apiInviteRevoke(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.RevokeInvite(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiTokens(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	ts, err := s.Auth.Tokens(r.Context(), p)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[tokenJSON]{Items: []tokenJSON{}}
	for _, t := range ts {
		out.Items = append(out.Items, toTokenJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiTokenCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in struct {
		Name          string `json:"name"`
		Role          string `json:"role"`
		ExpiresInDays int    `json:"expires_in_days"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	if in.ExpiresInDays < 0 || in.ExpiresInDays > 5*365 {
		s.apiError(w, r, apperr.New(apperr.Invalid, "expires_in_days must be 0 (never) to 1825"))
		return
	}
	raw, t, err := s.Auth.CreateToken(r.Context(), p, auth.NewToken{Name: in.Name, Role: auth.Role(in.Role),
		TTL: time.Duration(in.ExpiresInDays) * 24 * time.Hour}, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := toTokenJSON(t)
	out.Token = raw
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) apiTokenRevoke(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.RevokeToken(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiSessions(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	ss, err := s.Auth.Sessions(r.Context(), p)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[sessionJSON]{Items: []sessionJSON{}}
	for _, x := range ss {
		out.Items = append(out.Items, sessionJSON{ID: x.ID, IPAddress: x.IPAddress, UserAgent: x.UserAgent, Current: x.ID == p.SessionID,
			LastActivityAt: x.LastActivityAt, ExpiresAt: x.ExpiresAt, CreatedAt: x.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiSessionRevoke(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.RevokeSession(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiSecurityEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	f, err := securityFilter(r)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	events, err := s.DB.ListSecurityEvents(r.Context(), f)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[securityEventJSON]{Items: []securityEventJSON{}}
	for _, e := range events {
		out.Items = append(out.Items, securityEventJSON{ID: e.ID, EventType: e.EventType, Severity: e.Severity, UserID: e.UserID,
			ServerID: e.ServerID, IPAddress: e.IPAddress, UserAgent: e.UserAgent, Details: e.Details, CreatedAt: e.CreatedAt})
	}
	if len(events) == f.Limit {
		out.Next = events[len(events)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiActivity(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	f := activityFilter(r, p)
	entries, err := s.DB.ListActivity(r.Context(), f)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[activityJSON]{Items: []activityJSON{}}
	for _, a := range entries {
		j := activityJSON{ID: a.ID, UserID: a.UserID, Action: a.Action, SubjectType: a.SubjectType, SubjectID: a.SubjectID,
			Description: a.Description, Changes: a.Changes, CreatedAt: a.CreatedAt, Hash: a.Hash}
		if p.Role == auth.Admin { // addresses are for admins only
			j.IPAddress = a.IPAddress
		}
		out.Items = append(out.Items, j)
	}
	if len(entries) == f.Limit {
		out.Next = entries[len(entries)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}
