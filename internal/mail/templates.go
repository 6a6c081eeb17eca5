package mail

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"

	"upanel/internal/store"
)

// The templates of each message kind are two files: KIND.txt defines the
// "subject" and "text" templates (text/template), KIND.html defines "content"
// (html/template, which escapes), placed inside layout.html. Adding a kind is
// two files and one function like PasswordResetEmail.
//
//go:embed templates
var templateFiles embed.FS

// Message kinds, as recorded in mail_outbox.kind.
const (
	KindPasswordReset = "password_reset"
	KindInvite        = "invite"
	KindNotification  = "notification"
)

// Notifications is what a notification email says: one notification, or a
// digest of several that came in a burst.
type Notifications struct {
	Items []NotificationItem
	// Settings is the absolute URL of the page where the user chooses what
	// to be mailed.
	Settings string
}

// NotificationItem is one notification in an email.
type NotificationItem struct {
	Title, Message string
	Link           string // absolute URL of the object it is about, from UPANEL_URL
	When           string // when it happened, in the user's time zone
}

// NotificationEmail renders a notification email (a digest when there are
// several) to to, ready for store.Tx.EnqueueMail.
func NotificationEmail(to string, d Notifications) (store.OutboxMail, error) {
	if len(d.Items) == 0 {
		return store.OutboxMail{}, fmt.Errorf("mail: notification: nothing to say")
	}
	var err error
	if d.Settings, err = checkLink(d.Settings); err != nil {
		return store.OutboxMail{}, err
	}
	for i, it := range d.Items {
		if d.Items[i].Link, err = checkLink(it.Link); err != nil {
			return store.OutboxMail{}, err
		}
		// A title is one line of the subject: no control characters (C0 and
		// C1, such as NEL) and no line or paragraph separators.
		d.Items[i].Title = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, it.Title)), " ")
		if r := []rune(d.Items[i].Title); len(r) > 200 {
			d.Items[i].Title = string(r[:199]) + "…"
		}
	}
	return render(KindNotification, to, d)
}

// PasswordReset is what the password-reset email says.
type PasswordReset struct {
	// Link is the absolute reset URL with its token. The caller builds it from
	// UPANEL_URL, never from request headers, so a forged Host cannot redirect
	// the token.
	Link string
	// IP is the address the request came from, so the owner can tell whether it
	// was them.
	IP string
	// ExpiresIn is how long the link works (60 minutes).
	ExpiresIn time.Duration
}

// Invite is what the invitation email says.
type Invite struct {
	Link         string        // absolute accept URL with its token, built from UPANEL_URL
	InviterEmail string        // the admin who sent the invite
	Role         string        // the role the invitee gets; fixed by the admin
	ExpiresIn    time.Duration // how long the link works (7 days)
}

// PasswordResetEmail renders the password-reset email to to, ready for
// store.Tx.EnqueueMail.
func PasswordResetEmail(to string, d PasswordReset) (store.OutboxMail, error) {
	link, err := checkLink(d.Link)
	if err != nil {
		return store.OutboxMail{}, err
	}
	ip, err := netip.ParseAddr(d.IP)
	if err != nil {
		return store.OutboxMail{}, fmt.Errorf("mail: password reset: %q is not an IP address", d.IP)
	}
	if d.ExpiresIn <= 0 {
		return store.OutboxMail{}, fmt.Errorf("mail: password reset: expiry must be positive")
	}
	return render(KindPasswordReset, to, struct{ Link, IP, Expiry string }{link, ip.Unmap().String(), humanDuration(d.ExpiresIn)})
}

// rolePattern keeps a role name printable in a sentence without this package
// knowing the roles themselves.
var rolePattern = regexp.MustCompile(`^[a-z][a-z_-]{0,31}$`)

// InviteEmail renders the invitation email to to, ready for
// store.Tx.EnqueueMail.
func InviteEmail(to string, d Invite) (store.OutboxMail, error) {
	link, err := checkLink(d.Link)
	if err != nil {
		return store.OutboxMail{}, err
	}
	inviter, err := ParseAddress(d.InviterEmail)
	if err != nil || inviter.Name != "" {
		return store.OutboxMail{}, fmt.Errorf("mail: invite: inviter %q is not a bare email address", d.InviterEmail)
	}
	if !rolePattern.MatchString(d.Role) {
		return store.OutboxMail{}, fmt.Errorf("mail: invite: role %q is not a role name", d.Role)
	}
	if d.ExpiresIn <= 0 {
		return store.OutboxMail{}, fmt.Errorf("mail: invite: expiry must be positive")
	}
	return render(KindInvite, to, struct{ Link, InviterEmail, Role, Expiry string }{link, inviter.Address, d.Role, humanDuration(d.ExpiresIn)})
}

// checkLink accepts an absolute http(s) URL without credentials: the only kind
// of link UPanel mails.
func checkLink(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("mail: link must be an absolute http(s) URL without credentials")
	}
	return u.String(), nil
}

// render executes a kind's templates. They are parsed on each call: mail is
// rare, parsing takes microseconds, and nothing parsed is kept in globals.
func render(kind, to string, data any) (store.OutboxMail, error) {
	fail := func(err error) (store.OutboxMail, error) {
		return store.OutboxMail{}, fmt.Errorf("mail: render %s: %w", kind, err)
	}
	addr, err := ParseAddress(to)
	if err != nil {
		return fail(err)
	}
	text, err := texttemplate.New(kind).Option("missingkey=error").ParseFS(templateFiles, "templates/"+kind+".txt")
	if err != nil {
		return fail(err)
	}
	var subject, body bytes.Buffer
	if err := text.ExecuteTemplate(&subject, "subject", data); err != nil {
		return fail(err)
	}
	if err := text.ExecuteTemplate(&body, "text", data); err != nil {
		return fail(err)
	}
	subj := strings.TrimSpace(subject.String())
	if subj == "" || hasControl(subj) {
		return fail(fmt.Errorf("subject %q is not one line", subj))
	}
	html, err := htmltemplate.New(kind).Option("missingkey=error").
		Funcs(htmltemplate.FuncMap{"subject": func() string { return subj }}).
		ParseFS(templateFiles, "templates/layout.html", "templates/"+kind+".html")
	if err != nil {
		return fail(err)
	}
	var page bytes.Buffer
	if err := html.ExecuteTemplate(&page, "layout", data); err != nil {
		return fail(err)
	}
	return store.OutboxMail{Kind: kind, To: addr.Address, Subject: subj, Text: body.String(), HTML: page.String()}, nil
}

// humanDuration says a link's lifetime as people say it: "60 minutes",
// "24 hours", "7 days". Whole days from two days up, whole hours from two
// hours up, minutes otherwise, so 60 minutes stays "60 minutes".
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= 2*time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	default:
		return plural(int64((d+time.Minute-1)/time.Minute), "minute")
	}
}
