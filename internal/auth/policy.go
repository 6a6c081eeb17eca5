package auth

import "upanel/internal/store"

// Role is a user's (or a token's) role.
type Role string

const (
	Admin    Role = "admin"
	Operator Role = "operator"
	Viewer   Role = "viewer"
)

// Roles lists every role, most powerful first.
var Roles = []Role{Admin, Operator, Viewer}

func (r Role) rank() int {
	switch r {
	case Admin:
		return 3
	case Operator:
		return 2
	case Viewer:
		return 1
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// AtLeast reports whether r includes everything other may do.
func (r Role) AtLeast(other Role) bool { return r.rank() >= other.rank() && r.Valid() }

// Lower returns the weaker of two roles: a token never outranks its owner, even
// after the owner is demoted.
func Lower(a, b Role) Role {
	if a.rank() <= b.rank() {
		return a
	}
	return b
}

// Permission is what a route requires. Every route names one; there is no
// default, so a route without a rule cannot be registered.
type Permission int

const (
	// Public routes need no sign-in: login, setup, reset, invite acceptance.
	Public Permission = iota + 1
	// TwoFactorStep routes serve a session that passed the password and owes
	// a TOTP or recovery code.
	TwoFactorStep
	// AnySession routes serve every session, even one still owing its second
	// factor: signing out.
	AnySession
	// SignedIn routes serve any complete session, including one that must
	// still enrol in two-factor before anything else: enrolment and logout.
	SignedIn
	// Self routes act on the caller's own account: password, sessions, tokens.
	Self
	// Read routes show servers, apps, deployments, domains, backups, activity.
	Read
	// Operate routes change servers, apps, deployments, domains and backups.
	Operate
	// AgentOnly routes serve the agents on managed servers, authenticated by
	// an agent token; no user reaches them and agents reach nothing else.
	AgentOnly
	// AdminOnly routes manage users, invites, settings, backup destinations and
	// keys, show security events, and reveal secrets.
	AdminOnly
)

var permissionNames = map[Permission]string{
	Public: "public", TwoFactorStep: "two-factor step", AnySession: "any session", SignedIn: "signed in",
	Self: "self", Read: "read", Operate: "operate", AgentOnly: "agent", AdminOnly: "admin",
}

func (p Permission) String() string { return permissionNames[p] }

// Principal is who makes a request: a session or an API token, its user, and
// the role in force for this request.
type Principal struct {
	User *store.User
	// Role is the effective role: the user's, or the lower of the token's and
	// the user's.
	Role      Role
	SessionID string
	TokenID   string
	// AgentServerID is set, and User nil, when an agent authenticated with
	// its token: the server it runs on.
	AgentServerID string
	// TwoFactorPending: the password was right, the second factor is owed.
	TwoFactorPending bool
	// MustEnrollTwoFactor: the panel requires two-factor and this user has not
	// enrolled; only enrolment and logout are open.
	MustEnrollTwoFactor bool
	csrf                string
}

// CSRFToken is the token cookie-authenticated forms must send back.
func (p *Principal) CSRFToken() string { return p.csrf }

// ViaToken reports whether the request carries an API token rather than a
// cookie; such requests need no CSRF token, having no ambient authority.
func (p *Principal) ViaToken() bool { return p.TokenID != "" }

// Decision is the outcome of the policy for one request.
type Decision int

const (
	Allow Decision = iota
	NeedLogin
	NeedTwoFactor
	NeedEnrollment
	Deny
)

// Decide is UPanel's one access policy: every route of the UI and the API asks
// it, with the permission the route was registered with and whether the
// request changes anything, and anything it does not allow is refused.
//
// Beyond roles, one rule: a request authenticated by a viewer-role API token
// never writes, not even to its owner's own account, so a read-only token
// handed to a dashboard or script is read-only by construction.
func Decide(p *Principal, perm Permission, write bool) Decision {
	if perm == Public {
		return Allow
	}
	if perm == AgentOnly {
		if p != nil && p.AgentServerID != "" && p.User == nil {
			return Allow
		}
		return NeedLogin
	}
	if p == nil || p.User == nil {
		return NeedLogin
	}
	if perm == AnySession {
		return Allow
	}
	if p.TwoFactorPending {
		if perm == TwoFactorStep {
			return Allow
		}
		return NeedTwoFactor
	}
	if perm == TwoFactorStep {
		return Deny // already past it
	}
	if p.MustEnrollTwoFactor {
		if perm == SignedIn {
			return Allow
		}
		return NeedEnrollment
	}
	if write && p.ViaToken() && !p.Role.AtLeast(Operator) {
		return Deny
	}
	switch perm {
	case SignedIn, Self:
		return Allow
	case Read:
		if p.Role.AtLeast(Viewer) {
			return Allow
		}
	case Operate:
		if p.Role.AtLeast(Operator) {
			return Allow
		}
	case AdminOnly:
		if p.Role.AtLeast(Admin) {
			return Allow
		}
	}
	return Deny
}
