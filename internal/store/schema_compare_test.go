package store_test

// The comparison half of the schema drift test (schema_test.go): pure
// functions from the parsed seed and an introspected database to a list of
// human-readable problems. Nothing here touches a database, so the self-check
// can feed them a deliberately altered seed.

import (
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"upanel/internal/seedschema"
	"upanel/internal/store"
)

// schemaExtraColumns lists columns our migrations add to seed tables on
// purpose, by table. An addition to a seed table must be a decision, recorded
// here (and in the docs), not an accident.
var schemaExtraColumns = map[string][]string{
	// 020_add_activity_log_hash_chain: the tamper-evident hash chain (issue 3,
	// item 12); nullable, so the seed's columns keep their shape.
	"activity_log": {"prev_hash", "hash"},
	// 022_create_api_tokens_and_settings: TOTP replay protection (the last
	// time step used) and when the password last changed.
	"users": {"two_factor_last_step", "password_changed_at"},
	// 023_servers_agent_link: pinned host keys, the one-time bootstrap token,
	// the agent's pinned certificate, replay protection and status detail.
	"servers": {"ssh_host_keys", "ssh_host_keys_seen", "bootstrap_token_hash", "bootstrap_expires_at", "agent_cert_sha256",
		"agent_version", "agent_seq", "arch", "status_reason", "provisioned_at",
		// 024_notification_delivery: maintenance mode.
		"maintenance_since"},
	// 024_notification_delivery: whether the user wanted it by email, and
	// the mail that carries it.
	"notifications": {"email_wanted", "mail_outbox_id"},
	// 025_deployments: deploy keys' public halves and pinned git hosts;
	// app slugs, push-to-deploy hooks and image retention; what triggered a
	// deployment, the commit asked for, log progress and its job.
	// 026_credential_host: the https host a token or basic credential may be
	// sent to.
	"git_credentials": {"public_key", "known_hosts", "host"},
	"apps":            {"slug", "deploy_hook_id", "deploy_hook_secret", "keep_releases"},
	"deployments":     {"triggered_by", "requested_commit", "log_seq", "job_id"},
}

// schemaExtraSecretColumns lists store.SecretColumns() entries the seed does not
// name as encrypted.
var schemaExtraSecretColumns = []store.SecretColumn{
	{Table: "mail_outbox", Column: "body"},              // 021: reset and invite links are secrets
	{Table: "panel_credentials", Column: "private_key"}, // 023: the key agents pin the panel by
	{Table: "webhook_targets", Column: "url"},           // 024: chat webhook URLs are credentials
	{Table: "webhook_targets", Column: "secret"},        // 024: the HMAC signing key
	{Table: "apps", Column: "deploy_hook_secret"},       // 025: push-to-deploy secret
}

type schemaProblems []string

func (p *schemaProblems) add(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// seedTypes maps the seed's base types to each dialect's spelling in the
// catalog: SQLite's declared type (upper-cased, no spaces) and PostgreSQL's
// information_schema data_type. %s is the seed's size. JSON is TEXT with a
// json_valid CHECK on SQLite; ENUM is handled apart.
var seedTypes = map[string]struct{ sqlite, postgres string }{
	"CHAR":      {"CHAR(%s)", "character(%s)"},
	"VARCHAR":   {"VARCHAR(%s)", "character varying(%s)"},
	"TEXT":      {"TEXT", "text"},
	"TIMESTAMP": {"TIMESTAMP", "timestamp with time zone"},
	"INT":       {"INT", "integer"},
	"BIGINT":    {"BIGINT", "bigint"},
	"BOOLEAN":   {"BOOLEAN", "boolean"},
	"DECIMAL":   {"DECIMAL(%s)", "numeric(%s)"},
	"JSON":      {"TEXT", "json"},
}

// wantType is the catalog type a seed column must have on the dialect, or an
// explanation of why the test cannot tell.
func wantType(c seedschema.Column, dialect string) (string, error) {
	m, ok := seedTypes[c.Type]
	if !ok {
		return "", fmt.Errorf("seed type %s has no mapping in the drift test (add one to seedTypes)", c.Type)
	}
	tmpl := m.sqlite
	if dialect == "postgres" {
		tmpl = m.postgres
	}
	sized := strings.Contains(tmpl, "%s")
	switch {
	case sized && c.Size == "":
		return "", fmt.Errorf("seed type %s has no size", c.Type)
	case !sized && c.Size != "":
		return "", fmt.Errorf("seed type %s(%s) has a size the drift test does not map", c.Type, c.Size)
	case sized:
		return fmt.Sprintf(tmpl, c.Size), nil
	}
	return tmpl, nil
}

// compareSchema holds the introspected database to every table of the seed.
func compareSchema(seed *seedschema.Schema, live *liveSchema) []string {
	var p schemaProblems
	for i := range seed.Tables {
		st := &seed.Tables[i]
		lt, ok := live.table(st.Name)
		if !ok {
			p.add("%s: table missing", st.Name)
			continue
		}
		compareColumns(&p, st, lt, live.dialect)
		comparePrimaryKey(&p, st, lt)
		compareForeignKeys(&p, st, lt)
		compareIndexes(&p, st, lt)
	}
	return p
}

func compareColumns(p *schemaProblems, st *seedschema.Table, lt *liveTable, dialect string) {
	for _, sc := range st.Columns {
		lc, ok := lt.column(sc.Name)
		if !ok {
			p.add("%s.%s: column missing", st.Name, sc.Name)
			continue
		}
		compareType(p, st.Name, sc, lc, lt, dialect)
		compareNullability(p, st.Name, sc, lc)
		compareDefault(p, st.Name, sc, lc, dialect)
		if sc.OnUpdateCurrentTimestamp && !hasUpdateTrigger(lt) {
			p.add("%s.%s: ON UPDATE CURRENT_TIMESTAMP, but %s has no row-level UPDATE trigger", st.Name, sc.Name, st.Name)
		}
	}
	for _, lc := range lt.columns {
		if _, ok := st.Column(lc.name); !ok && !slices.Contains(schemaExtraColumns[st.Name], lc.name) {
			p.add("%s.%s: column not in the seed (list it in schemaExtraColumns if deliberate)", st.Name, lc.name)
		}
	}
}

var (
	sqliteVarcharRE   = regexp.MustCompile(`^VARCHAR\((\d+)\)$`)
	postgresVarcharRE = regexp.MustCompile(`^character varying\((\d+)\)$`)
)

func compareType(p *schemaProblems, table string, sc seedschema.Column, lc *liveColumn, lt *liveTable, dialect string) {
	if sc.Type == "ENUM" {
		compareEnum(p, table, sc, lc, lt, dialect)
		return
	}
	want, err := wantType(sc, dialect)
	if err != nil {
		p.add("%s.%s: %v", table, sc.Name, err)
		return
	}
	if lc.typ != want {
		p.add("%s.%s: type %s, want %s", table, sc.Name, lc.typ, want)
	}
	if sc.Type == "JSON" && dialect == "sqlite" {
		ok := false
		for _, c := range lt.checks {
			ok = ok || jsonValidCheck(c, sc.Name)
		}
		if !ok {
			p.add("%s.%s: JSON column has no CHECK (json_valid(%s))", table, sc.Name, sc.Name)
		}
	}
}

// compareEnum: neither engine has ENUM, so ours is a VARCHAR wide enough for
// every value with a CHECK allowing exactly the seed's values.
func compareEnum(p *schemaProblems, table string, sc seedschema.Column, lc *liveColumn, lt *liveTable, dialect string) {
	longest := 0
	for _, v := range sc.EnumValues {
		longest = max(longest, utf8.RuneCountInString(v))
	}
	re, spelled := sqliteVarcharRE, "VARCHAR(n)"
	if dialect == "postgres" {
		re, spelled = postgresVarcharRE, "character varying(n)"
	}
	if m := re.FindStringSubmatch(lc.typ); m == nil {
		p.add("%s.%s: type %s, want %s with n >= %d for the ENUM values", table, sc.Name, lc.typ, spelled, longest)
	} else if n, _ := strconv.Atoi(m[1]); n < longest {
		p.add("%s.%s: type %s, want %s with n >= %d for the ENUM values", table, sc.Name, lc.typ, spelled, longest)
	}

	want := schemaSorted(sc.EnumValues)
	found := false
	for _, c := range lt.checks {
		col, vals, ok := enumCheck(c)
		if !ok || col != sc.Name {
			continue
		}
		found = true
		if got := schemaSorted(vals); !slices.Equal(got, want) {
			p.add("%s.%s: CHECK allows %s, want the ENUM values %s", table, sc.Name, schemaSQLList(got), schemaSQLList(want))
		}
	}
	if !found {
		p.add("%s.%s: no CHECK restricting it to the ENUM values %s", table, sc.Name, schemaSQLList(want))
	}
}

func schemaSorted(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

// schemaSQLList formats values as a SQL list: ('a', 'b').
func schemaSQLList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = schemaSQLQuote(v)
	}
	return "(" + strings.Join(q, ", ") + ")"
}

func schemaSQLQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// compareNullability applies the nullability rule. The seed is MySQL, where
// only NOT NULL or PRIMARY KEY make a column non-nullable. Ours:
//   - seed NOT NULL or PRIMARY KEY => NOT NULL. On SQLite a PRIMARY KEY that
//     is not INTEGER PRIMARY KEY admits NULL unless it is also declared NOT
//     NULL, so the catalog's notnull flag, not the PRIMARY KEY, is what counts;
//   - seed nullable WITH a DEFAULT => NOT NULL: a deliberate tightening
//     (documented in docs/schema.md). Such a column always gets a value
//     unless a statement writes NULL on purpose, which is then a bug (a
//     BOOLEAN DEFAULT FALSE that can also be NULL has three states);
//   - seed nullable without a DEFAULT => nullable, since NULL is its "not yet"
//     or "unknown" (last_seen_at, user_id of a system event).
func compareNullability(p *schemaProblems, table string, sc seedschema.Column, lc *liveColumn) {
	var why string
	switch {
	case !sc.Nullable:
		why = "seed: NOT NULL"
		if sc.PrimaryKey {
			why = "seed: PRIMARY KEY"
		}
	case sc.PrimaryKey:
		why = "seed: PRIMARY KEY"
	case sc.Default != nil:
		why = "seed: nullable with DEFAULT " + seedDefaultSQL(sc) + ", tightened"
	}
	switch {
	case why != "" && !lc.notNull:
		p.add("%s.%s: nullable, want NOT NULL (%s)", table, sc.Name, why)
	case why == "" && lc.notNull:
		p.add("%s.%s: NOT NULL, want nullable (seed: nullable without DEFAULT)", table, sc.Name)
	}
}

func schemaIsStringType(t string) bool {
	switch t {
	case "CHAR", "VARCHAR", "TEXT", "ENUM", "JSON":
		return true
	}
	return false
}

// seedDefaultSQL shows the seed's default as SQL, quoting it for string types.
func seedDefaultSQL(sc seedschema.Column) string {
	if sc.Default == nil {
		return ""
	}
	if schemaIsStringType(sc.Type) && *sc.Default != "NULL" {
		return schemaSQLQuote(*sc.Default)
	}
	return *sc.Default
}

func compareDefault(p *schemaProblems, table string, sc seedschema.Column, lc *liveColumn, dialect string) {
	var ours string
	if lc.dflt != nil {
		ours = schemaNormalizeExpr(*lc.dflt)
	}
	hasOurs := lc.dflt != nil && !strings.EqualFold(ours, "NULL")
	hasSeed := sc.Default != nil && *sc.Default != "NULL"
	switch {
	case !hasSeed && hasOurs:
		p.add("%s.%s: DEFAULT %s, but the seed has none", table, sc.Name, ours)
	case hasSeed && !hasOurs:
		p.add("%s.%s: no DEFAULT, want the equivalent of seed DEFAULT %s", table, sc.Name, seedDefaultSQL(sc))
	case hasSeed && !equivalentDefault(sc, ours, dialect):
		p.add("%s.%s: DEFAULT %s, want the equivalent of seed DEFAULT %s", table, sc.Name, ours, seedDefaultSQL(sc))
	}
}

// sqliteNowRE is the store's SQLite CURRENT_TIMESTAMP: millisecond text in
// the layout the store writes (see dialect.go).
var sqliteNowRE = regexp.MustCompile(`^(?i:strftime)\s*\(\s*'%Y-%m-%d %H:%M:%f'\s*,\s*'now'\s*\)$`)

// equivalentDefault compares a seed default with our normalised default
// expression (casts and outer parentheses removed).
func equivalentDefault(sc seedschema.Column, ours, dialect string) bool {
	seed := *sc.Default
	switch {
	case strings.EqualFold(seed, "CURRENT_TIMESTAMP"):
		if dialect == "sqlite" {
			return sqliteNowRE.MatchString(ours)
		}
		return strings.EqualFold(ours, "CURRENT_TIMESTAMP") || strings.EqualFold(ours, "now()")
	case sc.Type == "BOOLEAN":
		want, ok1 := parseBoolDefault(seed, "seed")
		got, ok2 := parseBoolDefault(ours, dialect)
		return ok1 && ok2 && want == got
	case sc.Type == "INT" || sc.Type == "BIGINT" || sc.Type == "DECIMAL":
		if v, ok := schemaUnquote(ours); ok {
			ours = v
		}
		want, ok1 := new(big.Rat).SetString(seed)
		got, ok2 := new(big.Rat).SetString(strings.TrimSpace(ours))
		return ok1 && ok2 && want.Cmp(got) == 0
	default:
		v, ok := schemaUnquote(ours)
		return ok && v == seed
	}
}

// parseBoolDefault reads TRUE/FALSE as each side spells it: the seed and
// SQLite also accept 1/0; PostgreSQL prints true/false.
func parseBoolDefault(s, who string) (value, ok bool) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "TRUE":
		return true, true
	case "FALSE":
		return false, true
	case "1":
		return true, who != "postgres"
	case "0":
		return false, who != "postgres"
	}
	return false, false
}

func hasUpdateTrigger(lt *liveTable) bool {
	for _, tr := range lt.triggers {
		if tr.onUpdate {
			return true
		}
	}
	return false
}

func comparePrimaryKey(p *schemaProblems, st *seedschema.Table, lt *liveTable) {
	var want, got []string
	for _, c := range st.Columns {
		if c.PrimaryKey {
			want = append(want, c.Name)
		}
	}
	for _, c := range lt.columns {
		if c.primaryKey {
			got = append(got, c.name)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(want, got) {
		p.add("%s: PRIMARY KEY (%s), want (%s)", st.Name, strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

func compareForeignKeys(p *schemaProblems, st *seedschema.Table, lt *liveTable) {
	for _, f := range st.ForeignKeys {
		var onColumn []liveFK
		for _, lf := range lt.fks {
			if lf.column == f.Column {
				onColumn = append(onColumn, lf)
			}
		}
		if len(onColumn) == 0 {
			p.add("%s: FOREIGN KEY (%s) REFERENCES %s(%s) missing", st.Name, f.Column, f.RefTable, f.RefColumn)
			continue
		}
		got := onColumn[0]
		for _, lf := range onColumn {
			if lf.refTable == f.RefTable && lf.refColumn == f.RefColumn {
				got = lf
				break
			}
		}
		if got.refTable != f.RefTable || got.refColumn != f.RefColumn {
			p.add("%s: FOREIGN KEY (%s) references %s(%s), want %s(%s)", st.Name, f.Column, got.refTable, got.refColumn, f.RefTable, f.RefColumn)
			continue
		}
		switch {
		case f.OnDelete == "" && (got.onDelete == "NO ACTION" || got.onDelete == "RESTRICT"):
		case f.OnDelete == "":
			p.add("%s: FOREIGN KEY (%s) ON DELETE %s, want NO ACTION or RESTRICT (the seed states none)", st.Name, f.Column, got.onDelete)
		case got.onDelete != f.OnDelete:
			p.add("%s: FOREIGN KEY (%s) ON DELETE %s, want %s", st.Name, f.Column, got.onDelete, f.OnDelete)
		}
	}
}

func indexColumnsString(cols []seedschema.IndexColumn) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = c.Name
		if c.Desc {
			s[i] += " DESC"
		}
	}
	return "(" + strings.Join(s, ", ") + ")"
}

func describeSeedIndex(ix seedschema.Index) string {
	switch {
	case ix.Name == "":
		return "column-level UNIQUE " + indexColumnsString(ix.Columns)
	case ix.Unique:
		return "unique key " + ix.Name + " " + indexColumnsString(ix.Columns)
	}
	return "index " + ix.Name + " " + indexColumnsString(ix.Columns)
}

func describeLiveIndex(ix liveIndex) string {
	s := ix.name + " " + indexColumnsString(ix.columns)
	if ix.primary {
		s += " PRIMARY KEY"
	} else if ix.unique {
		s += " UNIQUE"
	}
	if ix.partial {
		s += " partial"
	}
	return s
}

// compareIndexes: every seed index needs an index on the same columns, in the
// same order and directions, with the same uniqueness. Names may differ (ours
// are <table>_<seed name>, because index names are per schema outside MySQL),
// partial indexes do not count, and extra indexes are fine.
func compareIndexes(p *schemaProblems, st *seedschema.Table, lt *liveTable) {
	for _, ix := range st.Indexes {
		matched := false
		var closest []string
		for _, li := range lt.indexes {
			if slices.Equal(li.columns, ix.Columns) && li.unique == ix.Unique && !li.partial {
				matched = true
				break
			}
			if slices.EqualFunc(li.columns, ix.Columns, func(a, b seedschema.IndexColumn) bool { return a.Name == b.Name }) {
				closest = append(closest, describeLiveIndex(li))
			}
		}
		if matched {
			continue
		}
		msg := fmt.Sprintf("%s: %s missing", st.Name, describeSeedIndex(ix))
		if len(closest) > 0 {
			msg += " (closest: " + strings.Join(closest, "; ") + ")"
		}
		*p = append(*p, msg)
	}
}

var createTableMigrationRE = regexp.MustCompile(`^[0-9]+_create_([a-z0-9_]+)_table$`)

func createsTable(sqlText, table string) bool {
	re := regexp.MustCompile(`(?is)\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"?` + regexp.QuoteMeta(table) + `"?\s*\(`)
	return re.MatchString(schemaMaskLiterals(sqlText))
}

// checkMigrations holds the migration files to the seed's "Migrations Order":
// the seed's migrations are our first ones, in order, and each seed table is
// created by the migration named after it (and by no other).
func checkMigrations(seed *seedschema.Schema, ms []store.Migration, render func(store.Migration) (string, error)) []string {
	var p schemaProblems
	if len(seed.MigrationOrder) == 0 {
		p.add("seed: no migration order")
	}
	for i, want := range seed.MigrationOrder {
		if i >= len(ms) {
			p.add("migration %d: missing, seed wants %s", i+1, want)
			continue
		}
		if ms[i].Name != want {
			p.add("migration %d is %s, seed wants %s", i+1, ms[i].Name, want)
		}
	}
	rendered := make([]string, len(ms))
	for i, m := range ms {
		s, err := render(m)
		if err != nil {
			p.add("migration %s: render: %v", m.Name, err)
		}
		rendered[i] = s
	}
	for _, st := range seed.Tables {
		var name string
		for _, n := range seed.MigrationOrder {
			if m := createTableMigrationRE.FindStringSubmatch(n); m != nil && m[1] == st.Name {
				name = n
			}
		}
		if name == "" {
			p.add("%s: the seed's migration order has no NNN_create_%s_table", st.Name, st.Name)
			continue
		}
		for i, m := range ms {
			creates := createsTable(rendered[i], st.Name)
			switch {
			case m.Name == name && !creates:
				p.add("migration %s: does not CREATE TABLE %s", m.Name, st.Name)
			case m.Name != name && creates:
				p.add("migration %s: creates %s, which belongs in %s", m.Name, st.Name, name)
			}
		}
	}
	return p
}

// seedNamedTables are the tables the seed only names in its migration order
// (sessions, password_reset_tokens, ...), with their migration.
func seedNamedTables(seed *seedschema.Schema) [][2]string {
	var out [][2]string
	for _, n := range seed.MigrationOrder {
		m := createTableMigrationRE.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		if _, ok := seed.Table(m[1]); !ok {
			out = append(out, [2]string{m[1], n})
		}
	}
	return out
}

// checkSeedNamedTables: tables the seed names without defining must still
// follow its conventions: a CHAR(26) ULID primary key and a created_at.
func checkSeedNamedTables(seed *seedschema.Schema, live *liveSchema) []string {
	var p schemaProblems
	idType, _ := wantType(seedschema.Column{Type: "CHAR", Size: "26"}, live.dialect)
	tsType, _ := wantType(seedschema.Column{Type: "TIMESTAMP"}, live.dialect)
	for _, tm := range seedNamedTables(seed) {
		table, migration := tm[0], tm[1]
		lt, ok := live.table(table)
		if !ok {
			p.add("%s: table missing (named by seed migration %s)", table, migration)
			continue
		}
		if id, ok := lt.column("id"); !ok {
			p.add("%s.id: column missing", table)
		} else {
			if id.typ != idType {
				p.add("%s.id: type %s, want %s", table, id.typ, idType)
			}
			if !id.notNull {
				p.add("%s.id: nullable, want NOT NULL (PRIMARY KEY)", table)
			}
		}
		var pk []string
		for _, c := range lt.columns {
			if c.primaryKey {
				pk = append(pk, c.name)
			}
		}
		if !slices.Equal(pk, []string{"id"}) {
			p.add("%s: PRIMARY KEY (%s), want (id)", table, strings.Join(pk, ", "))
		}
		if c, ok := lt.column("created_at"); !ok {
			p.add("%s.created_at: column missing", table)
		} else if c.typ != tsType {
			p.add("%s.created_at: type %s, want %s", table, c.typ, tsType)
		}
	}
	return p
}

// checkSecretColumns: the seed's encrypted columns and store.SecretColumns()
// must agree, apart from deliberate additions.
func checkSecretColumns(seed *seedschema.Schema, secrets, extras []store.SecretColumn) []string {
	var p schemaProblems
	if len(seed.EncryptedColumns) == 0 {
		p.add("seed: no encrypted columns")
	}
	inSeed := map[store.SecretColumn]bool{}
	for _, c := range seed.EncryptedColumns {
		sc := store.SecretColumn{Table: c.Table, Column: c.Column}
		inSeed[sc] = true
		if !slices.Contains(secrets, sc) {
			p.add("%s: encrypted in the seed but not in store.SecretColumns()", sc)
		}
	}
	for _, sc := range secrets {
		if !inSeed[sc] && !slices.Contains(extras, sc) {
			p.add("%s: in store.SecretColumns() but not encrypted in the seed (list it in schemaExtraSecretColumns if deliberate)", sc)
		}
	}
	return p
}
