package deploy

import (
	"context"
	"sort"
	"strings"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// An app's environment is three key/value sets, each an encrypted column:
// base (env_vars) for every environment, and the production and staging
// overrides. A deployment writes the effective set (base, then the
// environment's overrides) on the server as a 0600 .env next to the compose
// file. Values are write-only: the API and UI show keys, never values.

// EnvScopes lists the env scopes.
func EnvScopes() []string { return []string{store.EnvBase, store.EnvProduction, store.EnvStaging} }

const (
	maxEnvKey   = 128
	maxEnvValue = 32 << 10
	maxEnvVars  = 200
	// maxEnvBytes bounds one set (keys, values and a byte each for = and the
	// line end), so base plus an override plus a credential stays well under
	// the agent's 1 MiB request limit (wire.MaxBody): an oversized set is
	// refused when it is saved, not at deploy time.
	maxEnvBytes = 256 << 10
)

// checkEnvSize refuses a set larger than maxEnvBytes.
func checkEnvSize(m map[string]string) error {
	n := 0
	for k, v := range m {
		n += len(k) + len(v) + 2
	}
	if n > maxEnvBytes {
		return invalid("an env set holds at most %d KiB of variables (this one would hold %d KiB)", maxEnvBytes>>10, (n+1023)>>10)
	}
	return nil
}

// reservedEnvPrefixes configure docker compose itself when they appear in
// .env (COMPOSE_FILE, COMPOSE_PROJECT_NAME, DOCKER_HOST...): they could point
// a deployment at another project, file or Docker engine.
var reservedEnvPrefixes = []string{"COMPOSE_", "DOCKER_"}

// ValidEnvKey checks a variable name: [A-Za-z_][A-Za-z0-9_]*, at most 128
// characters, not one of docker compose's own settings.
func ValidEnvKey(k string) error {
	if len(k) > maxEnvKey || !envKeyRe.MatchString(k) {
		return invalid("%q is not a valid variable name: use letters, digits and _, not starting with a digit (at most %d characters)", shorten(k, 40), maxEnvKey)
	}
	up := strings.ToUpper(k)
	for _, p := range reservedEnvPrefixes {
		if strings.HasPrefix(up, p) {
			return invalid("%s is reserved: variables starting with COMPOSE_ or DOCKER_ configure docker compose itself on the server", k)
		}
	}
	return nil
}

// ValidEnvValue checks a value: UTF-8 text of at most 32 KiB that docker
// compose reads back unchanged from a raw KEY=value line of .env (no $, no
// surrounding whitespace or quotes, no " #", no control characters but TAB:
// see wire.EnvValueProblem). The .env file has no portable quoting, so
// values are written raw, and one compose would change is refused rather
// than reach the container (and escape the log masking) in another form.
// The agent applies the same check.
func ValidEnvValue(k, v string) error {
	switch {
	case len(v) > maxEnvValue:
		return invalid("the value of %s is longer than %d bytes", k, maxEnvValue)
	case !utf8.ValidString(v):
		return invalid("the value of %s is not valid UTF-8 text", k)
	}
	if msg := wire.EnvValueProblem(v); msg != "" {
		return invalid("the value of %s %s", k, msg)
	}
	return nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// validEnvSet checks a whole set (for a new app).
func validEnvSet(m map[string]string) error {
	if len(m) > maxEnvVars {
		return invalid("an env set holds at most %d variables", maxEnvVars)
	}
	for k, v := range m {
		if err := ValidEnvKey(k); err != nil {
			return err
		}
		if err := ValidEnvValue(k, v); err != nil {
			return err
		}
	}
	return checkEnvSize(m)
}

func validScope(scope string) error {
	for _, s := range EnvScopes() {
		if scope == s {
			return nil
		}
	}
	return invalid("the env scope must be base, production or staging")
}

// envChanges is the activity diff of an env set: each key whose value was
// added, changed or removed, marked secret so no value is stored.
func envChanges(scope string, old, new map[string]string) map[string]store.Change {
	o, n := map[string]any{}, map[string]any{}
	var names []string
	for k, v := range old {
		o["env."+scope+"."+k] = v
		names = append(names, "env."+scope+"."+k)
	}
	for k, v := range new {
		n["env."+scope+"."+k] = v
		names = append(names, "env."+scope+"."+k)
	}
	return audit.Diff(o, n, names...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SetEnv sets (adds or replaces) and unsets variables of one env scope of an
// app, and returns the scope's keys afterwards. The activity log names the
// keys that changed, never a value.
func (s *Service) SetEnv(ctx context.Context, p *auth.Principal, appID, scope string, set map[string]string, unset []string, m auth.Meta) ([]string, error) {
	if err := validScope(scope); err != nil {
		return nil, err
	}
	if len(set) == 0 && len(unset) == 0 {
		return nil, invalid("nothing to change: give variables to set or to unset")
	}
	for k, v := range set {
		if err := ValidEnvKey(k); err != nil {
			return nil, err
		}
		if err := ValidEnvValue(k, v); err != nil {
			return nil, err
		}
	}
	for _, k := range unset {
		if err := ValidEnvKey(k); err != nil {
			return nil, err
		}
		if _, both := set[k]; both {
			return nil, invalid("%s is both set and unset", k)
		}
	}
	var keys []string
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		a, err := tx.GetApp(ctx, appID)
		if err != nil {
			return err
		}
		old, err := tx.AppEnv(ctx, appID, scope)
		if err != nil {
			return err
		}
		next := make(map[string]string, len(old)+len(set))
		for k, v := range old {
			next[k] = v
		}
		for k, v := range set {
			next[k] = v
		}
		for _, k := range unset {
			delete(next, k)
		}
		if len(next) > maxEnvVars {
			return invalid("an env set holds at most %d variables", maxEnvVars)
		}
		if err := checkEnvSize(next); err != nil {
			return err
		}
		keys = sortedKeys(next)
		changes := envChanges(scope, old, next)
		if len(changes) == 0 {
			return nil
		}
		if err := tx.SetAppEnv(ctx, appID, scope, next); err != nil {
			return err
		}
		var added, changed, removed []string
		for _, k := range sortedKeys(set) {
			if ov, ok := old[k]; !ok {
				added = append(added, k)
			} else if ov != set[k] {
				changed = append(changed, k)
			}
		}
		for _, k := range unset {
			if _, ok := old[k]; ok {
				removed = append(removed, k)
			}
		}
		sort.Strings(removed)
		var parts []string
		for _, x := range []struct {
			verb string
			ks   []string
		}{{"added", added}, {"changed", changed}, {"removed", removed}} {
			if len(x.ks) > 0 {
				parts = append(parts, x.verb+" "+strings.Join(x.ks, ", "))
			}
		}
		return s.record(ctx, tx, p, m, "env_updated", "App", appID, "env "+scope+" of app "+a.Name+": "+strings.Join(parts, "; "), changes)
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// Keys returns the keys of an app's env scope, sorted, without values.
func (s *Service) Keys(ctx context.Context, appID, scope string) ([]string, error) {
	if err := validScope(scope); err != nil {
		return nil, err
	}
	return s.DB.AppEnvKeys(ctx, appID, scope)
}

// EffectiveEnv is the environment a deployment of an app writes to .env:
// the base set, then the environment's overrides ("" is production).
func (s *Service) EffectiveEnv(ctx context.Context, appID, environment string) (map[string]string, error) {
	if environment == "" {
		environment = Production
	}
	if environment != Production && environment != Staging {
		return nil, apperr.New(apperr.Invalid, "the environment must be production or staging")
	}
	base, err := s.DB.AppEnv(ctx, appID, store.EnvBase)
	if err != nil {
		return nil, err
	}
	over, err := s.DB.AppEnv(ctx, appID, environment)
	if err != nil {
		return nil, err
	}
	for k, v := range over {
		base[k] = v
	}
	return base, nil
}
