package seedschema

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const seedPath = "../../docs/seed-schema.md"

func loadSeed(t *testing.T) *Schema {
	t.Helper()
	b, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatalf("read seed: %v", err)
	}
	s, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s): %v", seedPath, err)
	}
	return s
}

func mustTable(t *testing.T, s *Schema, name string) *Table {
	t.Helper()
	tbl, ok := s.Table(name)
	if !ok {
		t.Fatalf("table %s not found", name)
	}
	return tbl
}

func mustColumn(t *testing.T, s *Schema, table, column string) *Column {
	t.Helper()
	c, ok := mustTable(t, s, table).Column(column)
	if !ok {
		t.Fatalf("column %s.%s not found", table, column)
	}
	return c
}

func strp(s string) *string { return &s }

func columnNames(tbl *Table) []string {
	var names []string
	for _, c := range tbl.Columns {
		names = append(names, c.Name)
	}
	return names
}

// checkColumn compares a whole column, so no field is accidentally left
// unchecked for the columns the brief calls out.
func checkColumn(t *testing.T, s *Schema, table string, want Column) {
	t.Helper()
	got := mustColumn(t, s, table, want.Name)
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("%s.%s:\n got %s\nwant %s", table, want.Name, fmtColumn(*got), fmtColumn(want))
	}
}

func fmtColumn(c Column) string {
	def := "<nil>"
	if c.Default != nil {
		def = strconv.Quote(*c.Default)
	}
	c.Default = nil
	return fmt.Sprintf("%+v (Default %s)", c, def)
}

func TestSeedTables(t *testing.T) {
	s := loadSeed(t)
	// The brief estimated 14; the seed defines 13.
	want := []string{
		"users", "servers", "apps", "git_credentials", "deployments",
		"domains", "backups", "backup_destinations", "backup_schedules",
		"server_metrics", "security_events", "notifications", "activity_log",
	}
	var got []string
	for _, tbl := range s.Tables {
		got = append(got, tbl.Name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("tables:\n got %q\nwant %q", got, want)
	}
	if _, ok := s.Table("sessions"); ok {
		t.Error("Table(sessions) found, but the seed does not define it")
	}
	if _, ok := s.Table("USERS"); ok {
		t.Error("Table lookup should be case-sensitive")
	}
}

func TestSeedEveryTableHasULIDPrimaryKey(t *testing.T) {
	s := loadSeed(t)
	for _, tbl := range s.Tables {
		var pks []string
		for _, c := range tbl.Columns {
			if c.PrimaryKey {
				pks = append(pks, c.Name)
			}
		}
		if !slices.Equal(pks, []string{"id"}) {
			t.Errorf("%s: primary key columns %q, want [id]", tbl.Name, pks)
			continue
		}
		checkColumn(t, s, tbl.Name, Column{Name: "id", Type: "CHAR", Size: "26", PrimaryKey: true})
		if tbl.Columns[0].Name != "id" {
			t.Errorf("%s: first column is %s, want id", tbl.Name, tbl.Columns[0].Name)
		}
	}
}

func TestSeedUsers(t *testing.T) {
	s := loadSeed(t)
	users := mustTable(t, s, "users")
	wantCols := []string{
		"id", "email", "password", "two_factor_secret", "two_factor_confirmed_at",
		"recovery_codes", "role", "timezone", "created_at", "updated_at",
	}
	if got := columnNames(users); !slices.Equal(got, wantCols) {
		t.Errorf("users columns:\n got %q\nwant %q", got, wantCols)
	}
	checkColumn(t, s, "users", Column{Name: "email", Type: "VARCHAR", Size: "255", Unique: true})
	checkColumn(t, s, "users", Column{Name: "password", Type: "VARCHAR", Size: "255"})
	checkColumn(t, s, "users", Column{Name: "two_factor_secret", Type: "TEXT", Nullable: true})
	checkColumn(t, s, "users", Column{
		Name: "role", Type: "ENUM", EnumValues: []string{"admin", "operator", "viewer"},
		Nullable: true, Default: strp("admin"),
	})
	checkColumn(t, s, "users", Column{Name: "timezone", Type: "VARCHAR", Size: "50", Nullable: true, Default: strp("UTC")})
	checkColumn(t, s, "users", Column{Name: "created_at", Type: "TIMESTAMP", Nullable: true, Default: strp("CURRENT_TIMESTAMP")})
	checkColumn(t, s, "users", Column{
		Name: "updated_at", Type: "TIMESTAMP", Nullable: true,
		Default: strp("CURRENT_TIMESTAMP"), OnUpdateCurrentTimestamp: true,
	})

	wantIdx := []Index{{Name: "", Columns: []IndexColumn{{Name: "email"}}, Unique: true}}
	if !reflect.DeepEqual(users.Indexes, wantIdx) {
		t.Errorf("users indexes = %+v, want %+v", users.Indexes, wantIdx)
	}
	if len(users.ForeignKeys) != 0 {
		t.Errorf("users foreign keys = %+v, want none", users.ForeignKeys)
	}
}

func TestSeedServers(t *testing.T) {
	s := loadSeed(t)
	servers := mustTable(t, s, "servers")
	if n := len(servers.Columns); n != 19 {
		t.Errorf("servers has %d columns, want 19 (section comments must not become columns)", n)
	}
	checkColumn(t, s, "servers", Column{Name: "host", Type: "VARCHAR", Size: "255", Comment: "IP or hostname"})
	checkColumn(t, s, "servers", Column{Name: "port", Type: "INT", Nullable: true, Default: strp("22")})
	checkColumn(t, s, "servers", Column{Name: "username", Type: "VARCHAR", Size: "50", Nullable: true, Default: strp("upanel")})
	checkColumn(t, s, "servers", Column{Name: "ssh_private_key", Type: "TEXT", Comment: "Encrypted"})
	checkColumn(t, s, "servers", Column{Name: "agent_token", Type: "VARCHAR", Size: "255", Nullable: true, Comment: "Hashed, for agent auth"})
	checkColumn(t, s, "servers", Column{Name: "agent_port", Type: "INT", Nullable: true, Default: strp("8443")})
	checkColumn(t, s, "servers", Column{
		Name: "status", Type: "ENUM", EnumValues: []string{"pending", "online", "offline", "error"},
		Nullable: true, Default: strp("pending"),
	})
	checkColumn(t, s, "servers", Column{Name: "security_score", Type: "INT", Nullable: true, Comment: "0-100, from security audit"})

	wantIdx := []Index{
		{Name: "idx_status", Columns: []IndexColumn{{Name: "status"}}},
		{Name: "idx_last_seen", Columns: []IndexColumn{{Name: "last_seen_at"}}},
	}
	if !reflect.DeepEqual(servers.Indexes, wantIdx) {
		t.Errorf("servers indexes = %+v, want %+v", servers.Indexes, wantIdx)
	}
}

func TestSeedApps(t *testing.T) {
	s := loadSeed(t)
	apps := mustTable(t, s, "apps")
	wantFK := []ForeignKey{
		{Column: "server_id", RefTable: "servers", RefColumn: "id", OnDelete: "CASCADE"},
		{Column: "git_credentials_id", RefTable: "git_credentials", RefColumn: "id", OnDelete: "SET NULL"},
	}
	if !reflect.DeepEqual(apps.ForeignKeys, wantFK) {
		t.Errorf("apps foreign keys = %+v, want %+v", apps.ForeignKeys, wantFK)
	}
	checkColumn(t, s, "apps", Column{Name: "git_repository", Type: "VARCHAR", Size: "500", Comment: "https://github.com/user/repo.git"})
	checkColumn(t, s, "apps", Column{Name: "docker_compose_file", Type: "VARCHAR", Size: "100", Nullable: true, Default: strp("docker-compose.yml")})
	checkColumn(t, s, "apps", Column{Name: "env_vars", Type: "TEXT", Nullable: true, Comment: "Encrypted JSON"})
	checkColumn(t, s, "apps", Column{Name: "git_credentials_id", Type: "CHAR", Size: "26", Nullable: true, Comment: "Optional, for private repos"})
}

func TestSeedDeployments(t *testing.T) {
	s := loadSeed(t)
	dep := mustTable(t, s, "deployments")
	wantIdx := []Index{
		{Name: "idx_app_created", Columns: []IndexColumn{{Name: "app_id"}, {Name: "created_at", Desc: true}}},
		{Name: "idx_status", Columns: []IndexColumn{{Name: "status"}}},
	}
	if !reflect.DeepEqual(dep.Indexes, wantIdx) {
		t.Errorf("deployments indexes = %+v, want %+v", dep.Indexes, wantIdx)
	}
	wantFK := []ForeignKey{
		{Column: "app_id", RefTable: "apps", RefColumn: "id", OnDelete: "CASCADE"},
		{Column: "user_id", RefTable: "users", RefColumn: "id", OnDelete: "SET NULL"},
		{Column: "rollback_from_id", RefTable: "deployments", RefColumn: "id", OnDelete: "SET NULL"},
	}
	if !reflect.DeepEqual(dep.ForeignKeys, wantFK) {
		t.Errorf("deployments foreign keys = %+v, want %+v", dep.ForeignKeys, wantFK)
	}
	checkColumn(t, s, "deployments", Column{Name: "is_rollback", Type: "BOOLEAN", Nullable: true, Default: strp("FALSE")})
	checkColumn(t, s, "deployments", Column{Name: "environment", Type: "ENUM", EnumValues: []string{"production", "staging"}})
	checkColumn(t, s, "deployments", Column{Name: "log", Type: "TEXT", Nullable: true, Comment: "Deployment log"})
}

func TestSeedDomains(t *testing.T) {
	s := loadSeed(t)
	domains := mustTable(t, s, "domains")
	wantIdx := []Index{
		{Name: "uk_domain", Columns: []IndexColumn{{Name: "domain"}}, Unique: true},
		{Name: "idx_app", Columns: []IndexColumn{{Name: "app_id"}}},
	}
	if !reflect.DeepEqual(domains.Indexes, wantIdx) {
		t.Errorf("domains indexes = %+v, want %+v", domains.Indexes, wantIdx)
	}
	// A UNIQUE KEY is a table constraint, not column-level UNIQUE.
	checkColumn(t, s, "domains", Column{Name: "domain", Type: "VARCHAR", Size: "255"})
	checkColumn(t, s, "domains", Column{Name: "ssl_enabled", Type: "BOOLEAN", Nullable: true, Default: strp("TRUE")})
}

func TestSeedBackupTables(t *testing.T) {
	s := loadSeed(t)
	// The JSON-shape comment lines inside the body must not become columns.
	dest := mustTable(t, s, "backup_destinations")
	wantCols := []string{"id", "name", "type", "credentials", "is_default", "created_at", "updated_at"}
	if got := columnNames(dest); !slices.Equal(got, wantCols) {
		t.Errorf("backup_destinations columns:\n got %q\nwant %q", got, wantCols)
	}
	checkColumn(t, s, "backup_destinations", Column{Name: "credentials", Type: "TEXT"})

	checkColumn(t, s, "backup_schedules", Column{
		Name: "cron_expression", Type: "VARCHAR", Size: "100", Comment: `"0 2 * * *" = daily 2am`,
	})
	checkColumn(t, s, "backup_schedules", Column{Name: "retention_count", Type: "INT", Nullable: true, Default: strp("7"), Comment: "Keep last N backups"})
	checkColumn(t, s, "backups", Column{Name: "size_bytes", Type: "BIGINT", Nullable: true})

	backups := mustTable(t, s, "backups")
	wantFK := []ForeignKey{
		{Column: "app_id", RefTable: "apps", RefColumn: "id", OnDelete: "CASCADE"},
		{Column: "backup_destination_id", RefTable: "backup_destinations", RefColumn: "id", OnDelete: "CASCADE"},
	}
	if !reflect.DeepEqual(backups.ForeignKeys, wantFK) {
		t.Errorf("backups foreign keys = %+v, want %+v", backups.ForeignKeys, wantFK)
	}
}

func TestSeedServerMetrics(t *testing.T) {
	s := loadSeed(t)
	checkColumn(t, s, "server_metrics", Column{Name: "cpu_percent", Type: "DECIMAL", Size: "5,2"})
	m := mustTable(t, s, "server_metrics")
	if last := m.Columns[len(m.Columns)-1].Name; last != "recorded_at" {
		t.Errorf("last server_metrics column = %s, want recorded_at", last)
	}
	wantIdx := []Index{{Name: "idx_server_recorded", Columns: []IndexColumn{{Name: "server_id"}, {Name: "recorded_at", Desc: true}}}}
	if !reflect.DeepEqual(m.Indexes, wantIdx) {
		t.Errorf("server_metrics indexes = %+v, want %+v", m.Indexes, wantIdx)
	}
}

func TestSeedJSONColumns(t *testing.T) {
	s := loadSeed(t)
	checkColumn(t, s, "security_events", Column{Name: "details", Type: "JSON", Nullable: true, Comment: "Event-specific data"})
	checkColumn(t, s, "activity_log", Column{Name: "changes", Type: "JSON", Nullable: true, Comment: `{ "field": { "old": x, "new": y } }`})
}

func TestSeedEncryptedColumns(t *testing.T) {
	s := loadSeed(t)
	want := []ColumnRef{
		{"servers", "ssh_private_key"},
		{"apps", "env_vars"},
		{"apps", "env_production"},
		{"apps", "env_staging"},
		{"git_credentials", "credentials"},
		{"backup_destinations", "credentials"},
		{"users", "two_factor_secret"},
		{"users", "recovery_codes"},
	}
	if !reflect.DeepEqual(s.EncryptedColumns, want) {
		t.Fatalf("encrypted columns:\n got %v\nwant %v", s.EncryptedColumns, want)
	}
	// Ciphertext is unbounded base64, so every encrypted column must be TEXT.
	for _, ref := range s.EncryptedColumns {
		if c := mustColumn(t, s, ref.Table, ref.Column); c.Type != "TEXT" {
			t.Errorf("encrypted column %s.%s has type %s, want TEXT", ref.Table, ref.Column, c.Type)
		}
	}
}

func TestSeedMigrationOrder(t *testing.T) {
	s := loadSeed(t)
	want := []string{
		"001_create_users_table",
		"002_create_sessions_table",
		"003_create_password_reset_tokens_table",
		"004_create_servers_table",
		"005_create_git_credentials_table",
		"006_create_apps_table",
		"007_create_deployments_table",
		"008_create_domains_table",
		"009_create_backup_destinations_table",
		"010_create_backups_table",
		"011_create_backup_schedules_table",
		"012_create_server_metrics_table",
		"013_create_security_events_table",
		"014_create_notifications_table",
		"015_create_activity_log_table",
		"016_create_login_attempts_table",
		"017_create_user_invites_table",
	}
	if !slices.Equal(s.MigrationOrder, want) {
		t.Fatalf("migration order:\n got %q\nwant %q", s.MigrationOrder, want)
	}
}

// TestSeedMigrationOrderConsistency checks the seed against itself: every
// table has a migration, the only migrations without a table are the four
// the seed leaves undefined, and every foreign key points at a table created
// earlier. The document's own table order does not satisfy the last rule.
func TestSeedMigrationOrderConsistency(t *testing.T) {
	s := loadSeed(t)
	created := map[string]int{}
	re := regexp.MustCompile(`^\d+_create_(\w+)_table$`)
	var undefined []string
	for i, m := range s.MigrationOrder {
		sub := re.FindStringSubmatch(m)
		if sub == nil {
			t.Errorf("migration %q is not a create_*_table migration", m)
			continue
		}
		created[sub[1]] = i
		if _, ok := s.Table(sub[1]); !ok {
			undefined = append(undefined, sub[1])
		}
	}
	wantUndefined := []string{"sessions", "password_reset_tokens", "login_attempts", "user_invites"}
	if !slices.Equal(undefined, wantUndefined) {
		t.Errorf("migrated tables missing from the seed = %q, want %q", undefined, wantUndefined)
	}
	for _, tbl := range s.Tables {
		pos, ok := created[tbl.Name]
		if !ok {
			t.Errorf("table %s has no migration", tbl.Name)
			continue
		}
		for _, fk := range tbl.ForeignKeys {
			if fk.RefTable != tbl.Name && created[fk.RefTable] >= pos {
				t.Errorf("%s.%s references %s, which is migrated later", tbl.Name, fk.Column, fk.RefTable)
			}
		}
	}
}

// TestSeedIndexesSummary keeps the prose "Indexes Summary" table honest.
func TestSeedIndexesSummary(t *testing.T) {
	b, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	s := loadSeed(t)
	re := regexp.MustCompile("^\\|[^|]*\\|\\s*`(\\w+)` on (\\w+)\\s*\\|$")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		n++
		tbl := mustTable(t, s, m[2])
		if !slices.ContainsFunc(tbl.Indexes, func(ix Index) bool { return ix.Name == m[1] }) {
			t.Errorf("Indexes Summary names %s on %s, which the table does not define", m[1], m[2])
		}
	}
	if n != 7 {
		t.Errorf("found %d Indexes Summary rows, want 7", n)
	}
}

func TestColumnLookupReturnsPointerIntoSchema(t *testing.T) {
	s := loadSeed(t)
	tbl := mustTable(t, s, "users")
	if tbl != &s.Tables[0] {
		t.Error("Schema.Table should return a pointer into Tables")
	}
	c := mustColumn(t, s, "users", "email")
	if c != &tbl.Columns[1] {
		t.Error("Table.Column should return a pointer into Columns")
	}
	if _, ok := tbl.Column("Email"); ok {
		t.Error("Column lookup should be case-sensitive")
	}
	var nilSchema *Schema
	if _, ok := nilSchema.Table("users"); ok {
		t.Error("nil Schema found a table")
	}
	var nilTable *Table
	if _, ok := nilTable.Column("id"); ok {
		t.Error("nil Table found a column")
	}
}
