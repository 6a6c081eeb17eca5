package web

import (
	"net/http"
	"time"

	"upanel/internal/auth"
	"upanel/internal/store"
)

type notificationSubjectJSON struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	// Path is the object's page in the panel, relative to UPANEL_URL.
	Path string `json:"path"`
}

type notificationEmailJSON struct {
	Wanted bool       `json:"wanted"`
	Status string     `json:"status"`
	SentAt *time.Time `json:"sent_at"`
	Error  string     `json:"error,omitempty"`
}

type notificationJSON struct {
	ID        string                   `json:"id"`
	Type      string                   `json:"type"`
	Title     string                   `json:"title"`
	Message   string                   `json:"message"`
	Subject   *notificationSubjectJSON `json:"subject"`
	ReadAt    *time.Time               `json:"read_at"`
	CreatedAt time.Time                `json:"created_at"`
	Email     notificationEmailJSON    `json:"email"`
}

func toNotificationJSON(n *store.Notification) notificationJSON {
	v := viewNotification(n)
	j := notificationJSON{ID: n.ID, Type: n.Type, Title: n.Title, Message: n.Message, ReadAt: n.ReadAt, CreatedAt: n.CreatedAt,
		Email: notificationEmailJSON{Wanted: n.EmailWanted, Status: v.Email.Status, SentAt: v.Email.SentAt, Error: v.Email.Error}}
	if n.NotifiableType != "" || n.NotifiableID != "" {
		j.Subject = &notificationSubjectJSON{Type: n.NotifiableType, ID: n.NotifiableID, Path: v.Path}
	}
	return j
}

func (s *Server) apiNotifications(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	f, err := notificationQuery(r)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	list, err := s.DB.ListNotifications(r.Context(), p.User.ID, f)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	unread, err := s.DB.UnreadNotifications(r.Context(), p.User.ID)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := struct {
		listJSON[notificationJSON]
		Unread int `json:"unread"`
	}{listJSON[notificationJSON]{Items: []notificationJSON{}}, unread}
	for _, n := range list {
		out.Items = append(out.Items, toNotificationJSON(n))
	}
	if len(list) == f.Limit {
		out.Next = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiNotificationRead(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.DB.MarkNotificationRead(r.Context(), p.User.ID, r.PathValue("id")); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiNotificationsReadAll(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	n, err := s.DB.MarkAllNotificationsRead(r.Context(), p.User.ID)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Marked int `json:"marked"`
	}{n})
}

func (s *Server) apiNotificationPreferences(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	inForce, _, err := s.preferences(r.Context(), p)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inForce)
}

// apiNotificationPreferencesUpdate takes {"type": "channel", ...}: the types
// it names change, the others stay as they are.
func (s *Server) apiNotificationPreferencesUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in map[string]string
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	inForce, err := s.savePreferences(r, p, in)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inForce)
}
