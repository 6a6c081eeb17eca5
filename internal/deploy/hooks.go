package deploy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/jobs"
	"upanel/internal/store"
)

// Push-to-deploy. Each app has a hook URL, <UPANEL_URL>/hooks/deploy/<hook
// id>, whose id is 32 random characters, and a secret (encrypted at rest).
// The secret is the only authentication: the route is public, takes no
// session and no CSRF token.
//
// Four senders are understood, recognised by their headers:
//
//   - GitHub: X-GitHub-Event, X-GitHub-Delivery, and X-Hub-Signature-256:
//     "sha256=" + hex HMAC-SHA256(secret, body).
//   - GitLab: X-Gitlab-Event, X-Gitlab-Token (the secret itself), and a
//     delivery id from Idempotency-Key (kept across GitLab's retries),
//     X-Gitlab-Event-UUID or X-Gitlab-Webhook-UUID, the first present.
//   - Gitea and Forgejo: X-Gitea-Event / X-Forgejo-Event, X-Gitea-Delivery /
//     X-Forgejo-Delivery, and X-Gitea-Signature / X-Forgejo-Signature: hex
//     HMAC-SHA256(secret, body). (They also send GitHub's headers; theirs
//     are looked at first.)
//   - Generic, for scripts and other CI: X-UPanel-Delivery, X-UPanel-Timestamp
//     (Unix seconds, within 5 minutes of the panel's clock) and
//     X-UPanel-Signature: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." +
//     body), the body being {"ref": "refs/heads/main", "after": "<40-hex sha>"}
//     (and optionally "pusher": "name"). It is the signature the panel's own
//     outgoing webhooks use.
//
// Signatures and tokens are compared in constant time (hmac.Equal), and
// checked before the body is parsed. Every delivery id is remembered per app
// for 30 days, and a second delivery with the same id is refused (409).
// Providers do not sign their delivery ids, so this stops redeliveries and
// casual replays; a captured request replayed under a new id can at most
// redeploy the commit it names (and the generic form's timestamp bounds even
// that to 5 minutes).
//
// An unknown hook id is 404: the ids are unguessable (160 bits and more), so
// telling "no such hook" apart from "bad signature" helps nobody guess one,
// and it tells a user who pasted a stale URL what is wrong.
//
// Only pushes to the app's branch deploy (its production environment, at the
// pushed head commit). Pushes to other branches, tag pushes, branch
// deletions, pull and merge request events and everything else are answered
// 202 and recorded as ignored; GitHub's ping is answered 200 "pong".

// MaxHookBody bounds a push payload (GitHub caps its own at 25 MB, but a
// push of a few commits is a few kilobytes; 1 MiB leaves room for large
// pushes with commit lists).
const MaxHookBody = 1 << 20

// hookClockSkew bounds how far the generic form's timestamp may be from the
// panel's clock, either way.
const hookClockSkew = 5 * time.Minute

// HookRefused is the security event of a delivery refused for its
// signature or token; a burst of them is recorded once per server and
// refusedEvery (each one is logged).
const HookRefused = "deploy_hook_refused"

const refusedEvery = 10 * time.Minute

// HookRetentionKind is the job that forgets deliveries older than
// store.KeepDeployHookDeliveries.
const HookRetentionKind = "deploy.hook_retention"

// Headers of the generic form.
const (
	HeaderHookDelivery  = "X-UPanel-Delivery"
	HeaderHookTimestamp = "X-UPanel-Timestamp"
	HeaderHookSignature = "X-UPanel-Signature"
)

// Outcome is what became of a delivery that was accepted.
type Outcome struct {
	// Status is the HTTP status to answer: 202 for a queued deployment and
	// for ignored deliveries, 200 for a ping.
	Status     int
	Provider   string
	Event      string // the sender's event name, as recorded
	DeliveryID string
	// Result is the delivery's recorded outcome (store.HookDeployed,
	// store.HookIgnoredBranch, ...).
	Result       string
	DeploymentID string
	// Ignored says why nothing was deployed: branch, tag, deleted, event;
	// empty when a deployment was queued or for a ping.
	Ignored string
	// Message is a sentence for the sender's delivery log.
	Message string
}

// hookEvent is what a delivery's headers say.
type hookEvent struct {
	provider string
	event    string // as sent
	delivery string
	kind     string // push, tag (GitLab's tag push), ping, other
}

// HandlePush authenticates and acts on one push-to-deploy delivery. body is
// the whole request body (the caller bounds it to MaxHookBody). Errors are
// apperr: NotFound (unknown hook), Unauthorized (signature, token or
// timestamp), Invalid (no delivery id, a body that is not the JSON of a
// push), Conflict (a delivery id already seen), or the deployment's own
// error when it could not be queued.
func (s *Service) HandlePush(ctx context.Context, hookID string, headers http.Header, body []byte, ip string) (Outcome, error) {
	if !validHookID(hookID) {
		return Outcome{}, apperr.New(apperr.NotFound, "no such deploy hook")
	}
	if len(body) > MaxHookBody {
		return Outcome{}, apperr.New(apperr.Invalid, "the payload is larger than %d bytes", MaxHookBody)
	}
	app, err := s.DB.AppByHookID(ctx, hookID)
	if err == nil && !app.HasHookSecret {
		err = apperr.New(apperr.NotFound, "the app has no push-to-deploy secret")
	}
	var secret string
	if err == nil {
		secret, err = s.DB.AppHookSecret(ctx, app.ID)
	}
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return Outcome{}, apperr.New(apperr.NotFound, "no such deploy hook")
		}
		return Outcome{}, err
	}
	ev, ok := detectSender(headers)
	if !ok {
		s.hookRefused(ctx, app, "", "no signature header", ip)
		return Outcome{}, apperr.New(apperr.Unauthorized,
			"the request carries no signature this panel accepts: send GitHub, GitLab, Gitea/Forgejo or X-UPanel-Signature headers")
	}
	if why := s.verifyDelivery(ev.provider, []byte(secret), headers, body); why != "" {
		s.hookRefused(ctx, app, ev.provider, why, ip)
		return Outcome{}, apperr.New(apperr.Unauthorized, "%s", why)
	}
	// Authenticated from here on.
	if ev.delivery == "" {
		return Outcome{}, apperr.New(apperr.Invalid, "the delivery has no delivery id header")
	}
	if !validDelivery(ev.delivery) {
		return Outcome{}, apperr.New(apperr.Invalid, "the delivery id must be 1-100 printable ASCII characters")
	}
	out := Outcome{Status: http.StatusAccepted, Provider: ev.provider, Event: eventName(ev.event), DeliveryID: ev.delivery}

	var push *pushInfo
	switch ev.kind {
	case "ping":
		out.Status, out.Result, out.Message = http.StatusOK, store.HookPing, "pong"
	case "tag":
		out.Result, out.Ignored, out.Message = store.HookIgnoredTag, "tag", "tag pushes do not deploy"
	case "push":
		if push, err = parsePush(ev.provider, payloadOf(headers, body)); err != nil {
			return Outcome{}, err
		}
		switch {
		case push.tag:
			out.Result, out.Ignored, out.Message = store.HookIgnoredTag, "tag", "tag pushes do not deploy"
		case push.branch != app.GitBranch:
			out.Result, out.Ignored, out.Message = store.HookIgnoredBranch, "branch",
				"the app deploys pushes to "+app.GitBranch+", not to "+push.branch
		case push.deleted:
			out.Result, out.Ignored, out.Message = store.HookIgnoredDelete, "deleted", "a branch deletion does not deploy"
		}
	default:
		out.Result, out.Ignored, out.Message = store.HookIgnoredEvent, "event", "only pushes deploy; "+out.Event+" events are ignored"
	}
	outcome := out.Result
	if outcome == "" {
		outcome = store.HookReceived
	}
	rowID, err := s.DB.ClaimDeployHookDelivery(ctx, store.DeployHookDelivery{AppID: app.ID, DeliveryID: ev.delivery,
		Provider: ev.provider, Event: out.Event, Outcome: outcome})
	if err != nil {
		return Outcome{}, err
	}
	if out.Result != "" {
		s.Log.Info("deploy hook delivery ignored", "app_id", app.ID, "provider", ev.provider, "event", out.Event, "outcome", out.Result)
		return out, nil
	}

	// A push deploys the branch's head, not the payload's after: deliveries
	// come in any order and can be replayed under a new id, and a pinned
	// commit would let an old or replayed one roll production back. after
	// stays in the activity record.
	depID, err := s.Deploy(ctx, nil, DeployInput{AppID: app.ID, Environment: Production, Trigger: TriggerWebhook},
		auth.Meta{IP: ip, UserAgent: "push-to-deploy"})
	if err != nil {
		// The delivery may be retried under its id.
		if ferr := s.DB.InTx(ctx, func(tx *store.Tx) error {
			return tx.FinishDeployHookDelivery(ctx, rowID, store.HookFailed, "")
		}); ferr != nil {
			s.Log.Error("record failed deploy hook delivery", "app_id", app.ID, "err", ferr)
		}
		s.Log.Warn("push-to-deploy could not queue a deployment", "app_id", app.ID, "provider", ev.provider, "err", err)
		return Outcome{}, err
	}
	desc := "push to " + push.branch + " by " + push.pusher
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FinishDeployHookDelivery(ctx, rowID, store.HookDeployed, depID); err != nil {
			return err
		}
		return s.record(ctx, tx, nil, auth.Meta{IP: ip}, "push_deploy", "App", app.ID, desc, map[string]store.Change{
			"commit":        {New: push.after},
			"deployment_id": {New: depID},
			"provider":      {New: ev.provider},
		})
	})
	if err != nil {
		// The deployment is queued whatever happens to its record.
		s.Log.Error("record push-to-deploy", "app_id", app.ID, "deployment_id", depID, "err", err)
	}
	out.Result, out.DeploymentID, out.Message = store.HookDeployed, depID, "deployment queued: "+desc
	return out, nil
}

// detectSender recognises the sender by its headers. Gitea and Forgejo also
// send GitHub's headers, so theirs are looked at first.
func detectSender(h http.Header) (hookEvent, bool) {
	switch {
	case h.Get("X-Forgejo-Event") != "" || h.Get("X-Gitea-Event") != "":
		ev := hookEvent{provider: store.HookGitea, event: first(h, "X-Forgejo-Event", "X-Gitea-Event"),
			delivery: first(h, "X-Forgejo-Delivery", "X-Gitea-Delivery")}
		ev.kind = map[string]string{"push": "push"}[ev.event]
		return ev, true
	case h.Get("X-Gitlab-Event") != "":
		ev := hookEvent{provider: store.HookGitLab, event: h.Get("X-Gitlab-Event"),
			delivery: first(h, "Idempotency-Key", "X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID")}
		ev.kind = map[string]string{"Push Hook": "push", "Tag Push Hook": "tag"}[ev.event]
		return ev, true
	case h.Get("X-GitHub-Event") != "":
		ev := hookEvent{provider: store.HookGitHub, event: h.Get("X-GitHub-Event"), delivery: h.Get("X-GitHub-Delivery")}
		ev.kind = map[string]string{"push": "push", "ping": "ping"}[ev.event]
		return ev, true
	case h.Get(HeaderHookSignature) != "":
		return hookEvent{provider: store.HookGeneric, event: "push", delivery: h.Get(HeaderHookDelivery), kind: "push"}, true
	}
	return hookEvent{}, false
}

func first(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// verifyDelivery checks a delivery's signature or token against the app's
// secret. It returns why it failed, or "" when it holds. Every comparison of
// secret material is constant-time.
func (s *Service) verifyDelivery(provider string, secret []byte, h http.Header, body []byte) string {
	switch provider {
	case store.HookGitHub:
		if !validHubSignature(h.Get("X-Hub-Signature-256"), "sha256=", secret, body) {
			return "the X-Hub-Signature-256 signature does not match the hook's secret"
		}
	case store.HookGitea:
		if !validHubSignature(first(h, "X-Forgejo-Signature", "X-Gitea-Signature"), "", secret, body) {
			return "the X-Gitea-Signature signature does not match the hook's secret"
		}
	case store.HookGitLab:
		// Both sides are hashed first, so the comparison takes the same
		// time whatever the token's length.
		got, want := sha256.Sum256([]byte(h.Get("X-Gitlab-Token"))), sha256.Sum256(secret)
		if !hmac.Equal(got[:], want[:]) || h.Get("X-Gitlab-Token") == "" {
			return "the X-Gitlab-Token does not match the hook's secret"
		}
	case store.HookGeneric:
		ts := h.Get(HeaderHookTimestamp)
		sec, err := parseUnixSeconds(ts)
		if err != nil {
			return "X-UPanel-Timestamp must be the Unix time in seconds"
		}
		if d := s.DB.Now().Sub(time.Unix(sec, 0)); d > hookClockSkew || d < -hookClockSkew {
			return "X-UPanel-Timestamp is more than 5 minutes from the panel's clock"
		}
		signed := make([]byte, 0, len(ts)+1+len(body))
		signed = append(append(append(signed, ts...), '.'), body...)
		if !validHubSignature(h.Get(HeaderHookSignature), "sha256=", secret, signed) {
			return "the X-UPanel-Signature signature does not match the hook's secret"
		}
	default:
		return "unknown sender"
	}
	return ""
}

// parseUnixSeconds reads 1 to 12 decimal digits, without a sign or spaces
// (the text signed must be exactly the text sent).
func parseUnixSeconds(ts string) (int64, error) {
	if len(ts) < 1 || len(ts) > 12 || strings.Trim(ts, "0123456789") != "" {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(ts, 10, 64)
}

// validHubSignature checks prefix + hex(HMAC-SHA256(secret, msg)) with
// hmac.Equal on the decoded bytes.
func validHubSignature(header, prefix string, secret, msg []byte) bool {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), prefix)
	if !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(msg)
	return hmac.Equal(got, m.Sum(nil))
}

// pushInfo is what a push payload says.
type pushInfo struct {
	branch  string // without refs/heads/
	tag     bool
	deleted bool
	after   string // the pushed head, 40 lower-case hex digits
	pusher  string // sanitized, for the activity log
}

// pushPayload is the union of the fields the senders use.
type pushPayload struct {
	Ref         string          `json:"ref"`
	After       string          `json:"after"`
	CheckoutSHA *string         `json:"checkout_sha"` // GitLab: null on deletion
	Deleted     bool            `json:"deleted"`      // GitHub
	ObjectKind  string          `json:"object_kind"`  // GitLab: push, tag_push
	Pusher      json.RawMessage `json:"pusher"`       // GitHub {name}, Gitea {login, username}, generic "name"
	Sender      struct {
		Login string `json:"login"`
	} `json:"sender"`
	UserUsername string `json:"user_username"` // GitLab
	UserName     string `json:"user_name"`
}

// payloadOf is the JSON of a delivery: the body, or its payload field when
// GitHub or Gitea was set to send application/x-www-form-urlencoded (the
// signature covers the body as sent).
func payloadOf(h http.Header, body []byte) []byte {
	if !strings.HasPrefix(h.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return body
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil
	}
	return []byte(v.Get("payload"))
}

// parsePush reads a push payload, after its signature was checked.
func parsePush(provider string, body []byte) (*pushInfo, error) {
	var p pushPayload
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p); err != nil {
		return nil, apperr.New(apperr.Invalid, "the payload is not a JSON push event")
	}
	if dec.More() {
		return nil, apperr.New(apperr.Invalid, "the payload has data after the JSON object")
	}
	if provider == store.HookGitLab && p.ObjectKind == "tag_push" {
		return &pushInfo{tag: true}, nil
	}
	var out pushInfo
	switch {
	case strings.HasPrefix(p.Ref, "refs/tags/"):
		out.tag = true
		return &out, nil
	case strings.HasPrefix(p.Ref, "refs/heads/") && len(p.Ref) > len("refs/heads/"):
		out.branch = strings.TrimPrefix(p.Ref, "refs/heads/")
	default:
		return nil, apperr.New(apperr.Invalid, "the payload's ref must be refs/heads/<branch> or refs/tags/<tag>")
	}
	after := strings.ToLower(p.After)
	if provider == store.HookGitLab && p.CheckoutSHA != nil && *p.CheckoutSHA != "" {
		after = strings.ToLower(*p.CheckoutSHA)
	}
	if !isCommitSHA(after) {
		return nil, apperr.New(apperr.Invalid, "the payload's after must be a 40-digit hexadecimal commit id")
	}
	out.deleted = p.Deleted || strings.Trim(after, "0") == ""
	out.after = after
	out.pusher = sanitizePusher(pusherName(p))
	return &out, nil
}

func pusherName(p pushPayload) string {
	var name string
	if len(p.Pusher) > 0 && json.Unmarshal(p.Pusher, &name) == nil && name != "" {
		return name
	}
	var o struct{ Name, Login, Username string }
	if len(p.Pusher) > 0 && json.Unmarshal(p.Pusher, &o) == nil {
		for _, n := range []string{o.Login, o.Username, o.Name} {
			if n != "" {
				return n
			}
		}
	}
	for _, n := range []string{p.UserUsername, p.UserName, p.Sender.Login} {
		if n != "" {
			return n
		}
	}
	return ""
}

// sanitizePusher keeps a pusher's name to letters, digits, spaces and
// ._@+- (at most 64 characters): it is sender-controlled text bound for the
// activity log.
func sanitizePusher(s string) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if n == 64 {
			break
		}
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@+-", r) ||
			// letters of other scripts ("Jürgen"), but no marks, controls or
			// bidirectional overrides
			r > 0x7f && unicode.IsLetter(r)
		switch {
		case ok:
			if space && b.Len() > 0 {
				b.WriteByte(' ')
				n++
			}
			space = false
			b.WriteRune(r)
			n++
		case r == ' ' || r == '\t':
			space = true
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

func isCommitSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validHookID: hook ids are 32 letters or digits (or - and _).
func validHookID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validDelivery(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// eventName turns a sender's event name ("Push Hook", "pull_request") into
// the identifier stored: lower case, [a-z0-9_.], at most 50 characters.
func eventName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 50; i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '.':
			b.WriteByte(c)
		case c == ' ' || c == '-':
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// hookRefused logs a refused delivery, and records a warning security event
// unless one was recorded for the app's server in the last refusedEvery.
func (s *Service) hookRefused(ctx context.Context, app *store.App, provider, why, ip string) {
	s.Log.Warn("deploy hook delivery refused", "app_id", app.ID, "provider", provider, "reason", why, "ip", ip)
	if s.Recorder == nil {
		return
	}
	recent, err := s.DB.RecentSecurityEvent(ctx, HookRefused, app.ServerID, s.DB.Now().Add(-refusedEvery))
	if err != nil {
		s.Log.Error("look up deploy hook refusals", "err", err)
		return
	}
	if recent {
		return
	}
	if _, err := s.Recorder.Security(ctx, store.SecurityEvent{EventType: HookRefused, Severity: store.SeverityWarning,
		ServerID: app.ServerID, IPAddress: ip, UserAgent: "push-to-deploy",
		Details: map[string]any{"app_id": app.ID, "app": app.Name, "provider": provider, "reason": why}}); err != nil {
		s.Log.Error("record deploy hook refusal", "err", err)
	}
}

// HookRetention forgets deliveries older than keep.
func (s *Service) HookRetention(keep time.Duration) jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		cutoff := s.DB.Now().Add(-keep)
		n, err := jobs.DeleteInBatches(ctx, 1000, func(ctx context.Context, limit int) (int, error) {
			return s.DB.DeleteOldDeployHookDeliveries(ctx, cutoff, limit)
		})
		if n > 0 {
			s.Log.Info("old deploy hook deliveries deleted", "rows", n)
		}
		return err
	}
}
