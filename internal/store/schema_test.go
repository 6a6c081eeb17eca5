package store_test

// Schema drift test: the migrated database, on every dialect, must match the
// product's data model in docs/seed-schema.md, so that drift between the
// migrations and the seed fails the build instead of surfacing in production.
//
// For each dialect the test migrates a fresh database, reads its catalogs
// (schema_introspect_test.go) and compares them with the parsed seed
// (schema_compare_test.go), which yields a list of human-readable problems;
// the test fails listing all of them. What is compared, per seed table:
//
//  1. the table and every seed column exist (order is free); extra columns
//     only if listed in schemaExtraColumns;
//  2. types: CHAR(n), VARCHAR(n), TEXT, TIMESTAMP, INT, BIGINT, BOOLEAN and
//     DECIMAL(p,s) map to the same type on SQLite and to character(n),
//     character varying(n), text, timestamp with time zone, integer, bigint,
//     boolean and numeric(p,s) on PostgreSQL; JSON is TEXT with a json_valid
//     CHECK on SQLite and json on PostgreSQL; ENUM is a VARCHAR(n) wide enough
//     for every value with a CHECK allowing exactly the enum's values;
//  3. nullability, by the rule documented on compareNullability;
//  4. defaults, by equivalence (CURRENT_TIMESTAMP is the store's strftime
//     expression on SQLite);
//  5. ON UPDATE CURRENT_TIMESTAMP has a row-level UPDATE trigger, and
//     TestSchemaUpdatedAtAdvances checks that it works;
//  6. foreign keys, with their ON DELETE action;
//  7. indexes and unique keys, by columns, order, direction and uniqueness
//     (names may differ: ours are <table>_<seed name>);
//  8. the seed's migration order is our first migrations, and each seed table
//     is created by the migration named after it;
//  9. tables the seed only names (sessions, ...) have a CHAR(26) id primary
//     key and a created_at;
//  10. encrypted columns agree with store.SecretColumns() (TestSchemaSecretColumns).
//
// TestSchemaDriftSelfCheck feeds the comparison a deliberately altered seed,
// so the test cannot pass by comparing nothing.

import (
	"context"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"upanel/internal/seedschema"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

const seedSchemaPath = "../../docs/seed-schema.md"

func loadSeedSchema(t *testing.T) *seedschema.Schema {
	t.Helper()
	b, err := os.ReadFile(seedSchemaPath)
	if err != nil {
		t.Fatalf("read seed: %v", err)
	}
	s, err := seedschema.Parse(b)
	if err != nil {
		t.Fatalf("parse %s: %v", seedSchemaPath, err)
	}
	if len(s.Tables) == 0 || len(s.MigrationOrder) == 0 || len(s.EncryptedColumns) == 0 {
		t.Fatalf("%s: parsed %d tables, %d migrations, %d encrypted columns; the drift test would compare nothing",
			seedSchemaPath, len(s.Tables), len(s.MigrationOrder), len(s.EncryptedColumns))
	}
	return s
}

func reportProblems(t *testing.T, what string, ps []string) {
	t.Helper()
	if len(ps) > 0 {
		t.Errorf("%s: %d problem(s):\n\t%s", what, len(ps), strings.Join(ps, "\n\t"))
	}
}

// eachSchemaDB runs fn for every dialect on a fresh migrated database.
func eachSchemaDB(t *testing.T, fn func(t *testing.T, sdb *schemaDB)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) { fn(t, openSchemaDB(t, d)) })
	}
}

func TestSchemaDrift(t *testing.T) {
	seed := loadSeedSchema(t)
	eachSchemaDB(t, func(t *testing.T, sdb *schemaDB) {
		live := sdb.introspect(t)
		reportProblems(t, "migrated schema differs from "+seedSchemaPath, compareSchema(seed, live))
		reportProblems(t, "tables named by the seed's migration order", checkSeedNamedTables(seed, live))
		reportProblems(t, "migration files", checkMigrations(seed, store.Migrations(), sdb.db.RenderMigration))
	})
}

func TestSchemaSecretColumns(t *testing.T) {
	seed := loadSeedSchema(t)
	reportProblems(t, "encrypted columns", checkSecretColumns(seed, store.SecretColumns(), schemaExtraSecretColumns))
}

// TestSchemaUpdatedAtAdvances is the behavioural half of ON UPDATE
// CURRENT_TIMESTAMP: for every table with an updated_at (the seed's, and ours
// beyond the seed), an UPDATE that does not set it must move it forward.
func TestSchemaUpdatedAtAdvances(t *testing.T) {
	seed := loadSeedSchema(t)
	eachSchemaDB(t, func(t *testing.T, sdb *schemaDB) {
		ctx := context.Background()
		live := sdb.introspect(t)

		columns := map[string]string{} // table -> the column to watch
		for _, st := range seed.Tables {
			for _, c := range st.Columns {
				if c.OnUpdateCurrentTimestamp {
					columns[st.Name] = c.Name
				}
			}
		}
		if len(columns) == 0 {
			t.Fatal("the seed has no ON UPDATE CURRENT_TIMESTAMP column; nothing to check")
		}
		for name, lt := range live.tables {
			if _, ok := lt.column("updated_at"); ok && columns[name] == "" {
				columns[name] = "updated_at"
			}
		}
		tables := make([]string, 0, len(columns))
		for name := range columns {
			tables = append(tables, name)
		}
		sort.Strings(tables)

		ids := map[string]string{}
		for _, table := range tables {
			t.Run(table, func(t *testing.T) {
				col := columns[table]
				id, err := schemaInsertFixture(ctx, sdb.db, table, ids)
				if err != nil {
					t.Fatal(err)
				}
				read := func() time.Time {
					t.Helper()
					var v any
					if err := sdb.db.QueryRowRaw(ctx, "SELECT "+col+" FROM "+table+" WHERE id = ?", id).Scan(&v); err != nil {
						t.Fatalf("read %s.%s: %v", table, col, err)
					}
					ts, err := schemaScanTime(v)
					if err != nil {
						t.Fatalf("read %s.%s: %v", table, col, err)
					}
					return ts
				}
				before := read()
				time.Sleep(20 * time.Millisecond)
				f := schemaRowFixtures[table]
				if err := sdb.db.ExecRaw(ctx, f.update, append(slices.Clone(f.updateArgs), id)...); err != nil {
					t.Fatalf("update %s: %v", table, err)
				}
				if after := read(); !after.After(before) {
					t.Errorf("%s.%s did not advance on UPDATE: %s before, %s after", table, col,
						before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
				}
			})
		}
	})
}

// schemaMinus returns the elements of a not matched one-for-one in b.
func schemaMinus(a, b []string) []string {
	left := map[string]int{}
	for _, s := range b {
		left[s]++
	}
	var out []string
	for _, s := range a {
		if left[s] > 0 {
			left[s]--
			continue
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func mustSeedTable(t *testing.T, s *seedschema.Schema, name string) *seedschema.Table {
	t.Helper()
	tbl, ok := s.Table(name)
	if !ok {
		t.Fatalf("self-check: seed has no table %s", name)
	}
	return tbl
}

func mustSeedColumn(t *testing.T, s *seedschema.Schema, table, column string) *seedschema.Column {
	t.Helper()
	c, ok := mustSeedTable(t, s, table).Column(column)
	if !ok {
		t.Fatalf("self-check: seed has no column %s.%s", table, column)
	}
	return c
}

func mustSeedIndex(t *testing.T, s *seedschema.Schema, table, index string) *seedschema.Index {
	t.Helper()
	tbl := mustSeedTable(t, s, table)
	for i := range tbl.Indexes {
		if tbl.Indexes[i].Name == index {
			return &tbl.Indexes[i]
		}
	}
	t.Fatalf("self-check: seed has no index %s on %s", index, table)
	return nil
}

func schemaStrPtr(s string) *string { return &s }

// TestSchemaDriftSelfCheck runs the comparison against a deliberately altered
// copy of the seed and requires it to report exactly the alterations, on top
// of whatever the real seed reports.
func TestSchemaDriftSelfCheck(t *testing.T) {
	seed := loadSeedSchema(t)
	eachSchemaDB(t, func(t *testing.T, sdb *schemaDB) {
		live := sdb.introspect(t)
		baseline := compareSchema(seed, live)

		alt := loadSeedSchema(t) // a fresh parse is a deep copy
		users := mustSeedTable(t, alt, "users")
		users.Columns = append(users.Columns, seedschema.Column{Name: "bogus", Type: "TEXT", Nullable: true})
		users.Columns = slices.DeleteFunc(users.Columns, func(c seedschema.Column) bool { return c.Name == "recovery_codes" })
		role := mustSeedColumn(t, alt, "users", "role")
		role.EnumValues = []string{"admin", "operator", "guest"}
		mustSeedColumn(t, alt, "users", "timezone").Default = schemaStrPtr("Europe/Paris")
		mustSeedColumn(t, alt, "servers", "name").Size = "120"
		mustSeedColumn(t, alt, "servers", "agent_token").Nullable = false
		mustSeedColumn(t, alt, "security_events", "user_agent").Type = "JSON"
		mustSeedColumn(t, alt, "deployments", "created_at").OnUpdateCurrentTimestamp = true
		mustSeedColumn(t, alt, "notifications", "read_at").Default = schemaStrPtr("CURRENT_TIMESTAMP")
		apps := mustSeedTable(t, alt, "apps")
		for i := range apps.ForeignKeys {
			if apps.ForeignKeys[i].Column == "server_id" {
				apps.ForeignKeys[i].OnDelete = "SET NULL"
			}
		}
		mustSeedIndex(t, alt, "deployments", "idx_app_created").Columns[1].Desc = false
		mustSeedIndex(t, alt, "domains", "uk_domain").Unique = false
		alt.Tables = append(alt.Tables, seedschema.Table{
			Name:    "ghosts",
			Columns: []seedschema.Column{{Name: "id", Type: "CHAR", Size: "26", PrimaryKey: true}},
		})

		want := []string{
			"users.bogus: column missing",
			"users.recovery_codes: column not in the seed (list it in schemaExtraColumns if deliberate)",
			"users.role: CHECK allows ('admin', 'operator', 'viewer'), want the ENUM values ('admin', 'guest', 'operator')",
			"users.timezone: DEFAULT 'UTC', want the equivalent of seed DEFAULT 'Europe/Paris'",
			"servers.agent_token: nullable, want NOT NULL (seed: NOT NULL)",
			"deployments.created_at: ON UPDATE CURRENT_TIMESTAMP, but deployments has no row-level UPDATE trigger",
			"notifications.read_at: nullable, want NOT NULL (seed: nullable with DEFAULT CURRENT_TIMESTAMP, tightened)",
			"notifications.read_at: no DEFAULT, want the equivalent of seed DEFAULT CURRENT_TIMESTAMP",
			"apps: FOREIGN KEY (server_id) ON DELETE CASCADE, want SET NULL",
			"deployments: index idx_app_created (app_id, created_at) missing (closest: deployments_idx_app_created (app_id, created_at DESC))",
			"domains: index uk_domain (domain) missing (closest: domains_uk_domain (domain) UNIQUE)",
			"ghosts: table missing",
		}
		switch sdb.dialect {
		case "sqlite":
			want = append(want,
				"servers.name: type VARCHAR(100), want VARCHAR(120)",
				"security_events.user_agent: JSON column has no CHECK (json_valid(user_agent))")
		case "postgres":
			want = append(want,
				"servers.name: type character varying(100), want character varying(120)",
				"security_events.user_agent: type text, want json")
		}
		sort.Strings(want)

		got := compareSchema(alt, live)
		added, vanished := schemaMinus(got, baseline), schemaMinus(baseline, got)
		if !slices.Equal(added, want) {
			t.Errorf("altered seed: the comparison reported\n\t%s\nwant exactly\n\t%s\nunexpected:\n\t%s\nnot reported:\n\t%s",
				strings.Join(added, "\n\t"), strings.Join(want, "\n\t"),
				strings.Join(schemaMinus(added, want), "\n\t"), strings.Join(schemaMinus(want, added), "\n\t"))
		}
		if len(vanished) > 0 {
			t.Errorf("altered seed: schemaProblems of the real seed disappeared:\n\t%s", strings.Join(vanished, "\n\t"))
		}

		// The migration and seed-named-table checks, against an altered
		// migration order.
		alt = loadSeedSchema(t)
		alt.MigrationOrder[1], alt.MigrationOrder[2] = alt.MigrationOrder[2], alt.MigrationOrder[1]
		alt.MigrationOrder = append(alt.MigrationOrder, "999_create_phantoms_table")
		ms := store.Migrations()
		baseline = append(checkMigrations(seed, ms, sdb.db.RenderMigration), checkSeedNamedTables(seed, live)...)
		got = append(checkMigrations(alt, ms, sdb.db.RenderMigration), checkSeedNamedTables(alt, live)...)
		want = []string{
			"migration 2 is 002_create_sessions_table, seed wants 003_create_password_reset_tokens_table",
			"migration 3 is 003_create_password_reset_tokens_table, seed wants 002_create_sessions_table",
			"phantoms: table missing (named by seed migration 999_create_phantoms_table)",
		}
		if len(ms) < len(alt.MigrationOrder) {
			want = append(want, "migration "+strconv.Itoa(len(alt.MigrationOrder))+": missing, seed wants 999_create_phantoms_table")
		} else {
			want = append(want, "migration "+strconv.Itoa(len(alt.MigrationOrder))+" is "+ms[len(alt.MigrationOrder)-1].Name+", seed wants 999_create_phantoms_table")
		}
		sort.Strings(want)
		if added := schemaMinus(got, baseline); !slices.Equal(added, want) {
			t.Errorf("altered migration order: the checks reported\n\t%s\nwant exactly\n\t%s", strings.Join(added, "\n\t"), strings.Join(want, "\n\t"))
		}
	})

	// The secret-column check, against an altered encryption list.
	alt := loadSeedSchema(t)
	alt.EncryptedColumns = append(slices.DeleteFunc(alt.EncryptedColumns, func(c seedschema.ColumnRef) bool {
		return c == seedschema.ColumnRef{Table: "apps", Column: "env_staging"}
	}), seedschema.ColumnRef{Table: "servers", Column: "agent_token"})
	want := []string{
		"apps.env_staging: in store.SecretColumns() but not encrypted in the seed (list it in schemaExtraSecretColumns if deliberate)",
		"servers.agent_token: encrypted in the seed but not in store.SecretColumns()",
	}
	baseline := checkSecretColumns(seed, store.SecretColumns(), schemaExtraSecretColumns)
	got := checkSecretColumns(alt, store.SecretColumns(), schemaExtraSecretColumns)
	if added := schemaMinus(got, baseline); !slices.Equal(added, want) {
		t.Errorf("altered encryption list: the check reported\n\t%s\nwant exactly\n\t%s", strings.Join(added, "\n\t"), strings.Join(want, "\n\t"))
	}
}
