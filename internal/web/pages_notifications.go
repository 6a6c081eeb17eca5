package web

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/store"
)

// The notification center: the bell in every page's header, the list of the
// caller's notifications, and the choice, per type, of how they arrive. Every
// route acts on the caller's own notifications only: the store's queries all
// take the caller's user id.

// bell is what the header shows: the link to the notifications and the
// unread count, which static/notifications.js keeps current.
type bell struct {
	Count int
}

// bellFor reads the unread count for the page's header: one indexed count,
// and none for pages without the header or callers the list would refuse.
func (s *Server) bellFor(r *http.Request, p *auth.Principal) *bell {
	if p == nil || p.User == nil || auth.Decide(p, auth.Self, false) != auth.Allow {
		return nil
	}
	n, err := s.DB.UnreadNotifications(r.Context(), p.User.ID)
	if err != nil {
		s.Log.Warn("unread notifications for the bell", "err", err)
		return nil
	}
	return &bell{Count: n}
}

// channelChoice is one way a notification type can arrive.
type channelChoice struct {
	Channel string
	Label   string
}

// channels are the choices of the settings page, in its order.
var channels = []channelChoice{
	{store.ChannelInApp, "In the panel"},
	{store.ChannelEmail, "In the panel and by email"},
	{store.ChannelOff, "Off"},
}

func validChannel(c string) bool {
	for _, x := range channels {
		if x.Channel == c {
			return true
		}
	}
	return false
}

func channelLabel(c string) string {
	for _, x := range channels {
		if x.Channel == c {
			return x.Label
		}
	}
	return c
}

func typeLabel(t string) string {
	for _, x := range notify.Types() {
		if x.Type == t {
			return x.Label
		}
	}
	return t
}

// notificationQuery reads the list's filters: unread=1, type, before (an id)
// and limit. Values that mean nothing are refused rather than ignored, so a
// client never mistakes a typo for an empty list.
func notificationQuery(r *http.Request) (store.NotificationFilter, error) {
	q := r.URL.Query()
	f := store.NotificationFilter{Type: q.Get("type"), Before: q.Get("before"), Limit: readListQuery(r).Limit}
	switch q.Get("unread") {
	case "", "0", "false":
	case "1", "true":
		f.Unread = true
	default:
		return f, apperr.New(apperr.Invalid, "unread must be 1 or 0")
	}
	if f.Type != "" && !notify.ValidType(f.Type) {
		return f, apperr.New(apperr.Invalid, "%q is not a notification type", f.Type)
	}
	if f.Before != "" && !validID(f.Before) {
		return f, apperr.New(apperr.Invalid, "before must be the id of a notification")
	}
	return f, nil
}

// notificationView is one notification as the list shows it.
type notificationView struct {
	*store.Notification
	Label string
	Path  string
	Email emailState
}

// emailState is how a notification's email went.
type emailState struct {
	// Status: none (not wanted by email), pending (waiting for its burst to
	// end, to go in one digest), queued (in the outbox), sent, failed.
	Status string
	SentAt *time.Time
	// Error is the mail server's last answer: the reason of a failure, or of
	// the attempt a queued mail retries after.
	Error string
}

func emailOf(n *store.Notification) emailState {
	e := emailState{SentAt: n.EmailSentAt, Error: n.MailError}
	switch {
	case n.EmailSentAt != nil || n.MailStatus == store.MailSent:
		e.Status, e.Error = "sent", ""
	case n.MailStatus == store.MailFailed:
		e.Status = "failed"
		if e.Error == "" {
			e.Error = "unknown error"
		}
	case n.MailStatus == store.MailQueued:
		e.Status = "queued"
	case n.EmailWanted:
		e.Status = "pending"
	default:
		e.Status, e.Error = "none", ""
	}
	return e
}

func viewNotification(n *store.Notification) notificationView {
	return notificationView{Notification: n, Label: typeLabel(n.Type), Path: notify.Path(n.NotifiableType, n.NotifiableID), Email: emailOf(n)}
}

type notificationsData struct {
	Items  []notificationView
	Types  []notify.TypeInfo
	Unread bool   // the unread filter is on
	Type   string // the type filter
	Next   string // the link to older notifications
	// UnreadCount is every unread notification of the user, filters aside.
	UnreadCount int
	// Back is this list, where the forms return.
	Back string
}

func (s *Server) notificationsPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	f, err := notificationQuery(r)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg := s.newPage(w, r, "Notifications")
	pg.Nav = "notifications"
	list, err := s.DB.ListNotifications(r.Context(), p.User.ID, f)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	d := &notificationsData{Types: notify.Types(), Unread: f.Unread, Type: f.Type, Back: r.URL.RequestURI()}
	for _, n := range list {
		d.Items = append(d.Items, viewNotification(n))
	}
	if len(list) == f.Limit {
		d.Next = nextPage(r.URL.Query(), list[len(list)-1].ID)
	}
	if pg.Bell != nil {
		d.UnreadCount = pg.Bell.Count
	}
	pg.Data = d
	s.render(w, r, "notifications", pg)
}

// backToNotifications is where a form of the list returns: the list it was
// sent from (its filters and page), and nowhere else.
func backToNotifications(r *http.Request) string {
	back := safeNext(r.PostFormValue("back"))
	if back == "/notifications" || strings.HasPrefix(back, "/notifications?") {
		return back
	}
	return "/notifications"
}

func (s *Server) notificationRead(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.DB.MarkNotificationRead(r.Context(), p.User.ID, r.PathValue("id")); err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.redirect(w, r, backToNotifications(r), "")
}

func (s *Server) notificationsReadAll(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	n, err := s.DB.MarkAllNotificationsRead(r.Context(), p.User.ID)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	msg := "Nothing was unread."
	switch {
	case n == 1:
		msg = "1 notification marked read."
	case n > 1:
		msg = strconv.Itoa(n) + " notifications marked read."
	}
	s.redirect(w, r, backToNotifications(r), msg)
}

// preferenceRow is one type on the settings page.
type preferenceRow struct {
	Type    string
	Label   string
	Channel string // in force: the user's choice, or the role's default
	Chosen  bool   // the user chose it; otherwise it follows the role
}

type preferencesData struct {
	Rows     []preferenceRow
	Channels []channelChoice
	Role     string
	Default  string // the role's channel, as a label
	// AnyChosen: the user chose some types, so the page marks those that
	// still follow the role.
	AnyChosen bool
}

// preferences returns the channel in force per type for the user, and which
// of them the user chose.
func (s *Server) preferences(ctx context.Context, p *auth.Principal) (map[string]string, map[string]bool, error) {
	chosen, err := s.DB.NotificationPreferences(ctx, p.User.ID)
	if err != nil {
		return nil, nil, err
	}
	def := notify.DefaultChannel(p.User.Role)
	inForce, own := map[string]string{}, map[string]bool{}
	for _, t := range notify.Types() {
		inForce[t.Type] = def
		if c, ok := chosen[t.Type]; ok && validChannel(c) {
			inForce[t.Type], own[t.Type] = c, true
		}
	}
	return inForce, own, nil
}

// checkPreferences refuses a change naming a type or a channel that does not
// exist, as a whole: nothing of it is saved.
func checkPreferences(in map[string]string) error {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, t := range keys {
		if !notify.ValidType(t) {
			return apperr.New(apperr.Invalid, "%q is not a notification type", t)
		}
		if !validChannel(in[t]) {
			return apperr.New(apperr.Invalid, "%s: %q is not a channel: use in_app, email or off", t, in[t])
		}
	}
	return nil
}

// savePreferences records the caller's choices, those that change what the
// caller gets, with an entry in the activity log. A choice equal to what is
// in force already writes nothing, so a type left at its default keeps
// following the role. It returns the channels now in force.
func (s *Server) savePreferences(r *http.Request, p *auth.Principal, in map[string]string) (map[string]string, error) {
	if err := checkPreferences(in); err != nil {
		return nil, err
	}
	ctx := r.Context()
	inForce, _, err := s.preferences(ctx, p)
	if err != nil {
		return nil, err
	}
	old, changed := map[string]any{}, map[string]any{}
	for t, c := range in {
		if inForce[t] != c {
			old[t], changed[t] = inForce[t], c
		}
	}
	if len(changed) == 0 {
		return inForce, nil
	}
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		for t, c := range changed {
			if err := tx.SetNotificationPreference(ctx, p.User.ID, t, c.(string)); err != nil {
				return err
			}
		}
		_, err := s.Audit.Activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "updated", SubjectType: "User", SubjectID: p.User.ID,
			Description: "notification preferences changed", IPAddress: s.clientIP(r), Changes: audit.Diff(old, changed)})
		return err
	})
	if err != nil {
		return nil, err
	}
	for t, c := range changed {
		inForce[t] = c.(string)
	}
	return inForce, nil
}

func (s *Server) notificationSettingsPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderPreferences(w, r, p, nil)
}

func (s *Server) renderPreferences(w http.ResponseWriter, r *http.Request, p *auth.Principal, err error) {
	pg := s.newPage(w, r, "Notification settings")
	pg.Nav = "notifications"
	inForce, own, lerr := s.preferences(r.Context(), p)
	if lerr != nil {
		s.fail(w, r, false, lerr)
		return
	}
	d := &preferencesData{Channels: channels, Role: p.User.Role, Default: channelLabel(notify.DefaultChannel(p.User.Role)), AnyChosen: len(own) > 0}
	for _, t := range notify.Types() {
		d.Rows = append(d.Rows, preferenceRow{Type: t.Type, Label: t.Label, Channel: inForce[t.Type], Chosen: own[t.Type]})
	}
	pg.Data = d
	if err != nil {
		pg.Form = url.Values{} // show what is saved, not what was refused
		s.renderForm(w, r, "notification_settings", pg, err)
		return
	}
	s.render(w, r, "notification_settings", pg)
}

func (s *Server) notificationSettingsSubmit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	in := map[string]string{}
	for k, v := range r.PostForm {
		if k == "csrf_token" {
			continue
		}
		if len(v) != 1 {
			s.renderPreferences(w, r, p, apperr.New(apperr.Invalid, "%q was sent %d times", k, len(v)))
			return
		}
		in[k] = v[0]
	}
	if _, err := s.savePreferences(r, p, in); err != nil {
		s.renderPreferences(w, r, p, err)
		return
	}
	s.redirect(w, r, "/notifications/settings", "Notification settings saved.")
}
