package store_test

// Catalog introspection for the schema drift test (schema_test.go): reads what
// a migrated SQLite or PostgreSQL database really contains into one
// dialect-neutral model, liveSchema, which compareSchema holds to the seed.

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the raw catalog connection
	_ "modernc.org/sqlite"             // "sqlite" driver for the raw catalog connection

	"upanel/internal/seedschema"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// liveSchema is what a migrated database contains, as far as the drift test
// cares.
type liveSchema struct {
	dialect string
	tables  map[string]*liveTable
}

type liveTable struct {
	name string
	// columns in ordinal order.
	columns []liveColumn
	// checks holds the text of every CHECK constraint, without the CHECK
	// keyword: column-level and table-level ones alike, since neither catalog
	// keeps that distinction reliably.
	checks   []string
	fks      []liveFK
	indexes  []liveIndex
	triggers []liveTrigger
}

type liveColumn struct {
	name string
	// typ is the SQLite declared type, upper-cased without spaces
	// ("VARCHAR(255)", "DECIMAL(5,2)"), or the PostgreSQL information_schema
	// data_type with its size ("character varying(255)", "numeric(5,2)").
	typ     string
	notNull bool
	// dflt is the default expression as the catalog reports it; nil for none.
	dflt       *string
	primaryKey bool
}

type liveFK struct {
	column    string // comma-separated when composite
	refTable  string
	refColumn string
	onDelete  string // "CASCADE", "SET NULL", "NO ACTION", "RESTRICT", "SET DEFAULT"
}

type liveIndex struct {
	name    string
	columns []seedschema.IndexColumn // key columns; an expression is "(expression)"
	unique  bool
	primary bool
	partial bool
}

type liveTrigger struct {
	name string
	// onUpdate: fires on every UPDATE of the table (not only UPDATE OF
	// some columns), once per row.
	onUpdate bool
	def      string
}

func (s *liveSchema) table(name string) (*liveTable, bool) {
	t, ok := s.tables[name]
	return t, ok
}

func (t *liveTable) column(name string) (*liveColumn, bool) {
	for i := range t.columns {
		if t.columns[i].name == name {
			return &t.columns[i], true
		}
	}
	return nil, false
}

// schemaDB is a freshly migrated database plus a second, plain database/sql
// connection to it, because the store exports no multi-row raw query.
type schemaDB struct {
	dialect string
	db      *store.DB
	raw     *sql.DB
}

// openSchemaDB migrates a new database of the dialect (skipping PostgreSQL
// when no test server is configured, as storetest does).
func openSchemaDB(t *testing.T, dialect string) *schemaDB {
	t.Helper()
	u := storetest.URL(t, dialect)
	db := storetest.OpenURL(t, u, storetest.Keyring(t))
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	var raw *sql.DB
	var err error
	switch dialect {
	case "sqlite":
		path := store.SQLitePath(u)
		raw, err = sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	case "postgres":
		raw, err = sql.Open("pgx", u)
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Registered after storetest's cleanups, so it runs before the test
	// database is dropped.
	t.Cleanup(func() { raw.Close() })
	return &schemaDB{dialect: dialect, db: db, raw: raw}
}

func (s *schemaDB) introspect(t *testing.T) *liveSchema {
	t.Helper()
	ctx := context.Background()
	var live *liveSchema
	var err error
	switch s.dialect {
	case "sqlite":
		live, err = introspectSQLite(ctx, s.raw)
	case "postgres":
		live, err = introspectPostgres(ctx, s.raw)
	default:
		err = fmt.Errorf("unknown dialect %q", s.dialect)
	}
	if err != nil {
		t.Fatalf("introspect %s: %v", s.dialect, err)
	}
	if len(live.tables) == 0 {
		t.Fatalf("introspect %s: no tables found in a migrated database", s.dialect)
	}
	return live
}

// schemaQueryAll runs q and calls scan for each row.
func schemaQueryAll(ctx context.Context, db *sql.DB, q string, args []any, scan func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(strings.Fields(q), " "), err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ---- SQLite ----

func introspectSQLite(ctx context.Context, db *sql.DB) (*liveSchema, error) {
	live := &liveSchema{dialect: "sqlite", tables: map[string]*liveTable{}}
	createSQL := map[string]string{}
	err := schemaQueryAll(ctx, db, `SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`, nil,
		func(r *sql.Rows) error {
			var name, text string
			if err := r.Scan(&name, &text); err != nil {
				return err
			}
			live.tables[name] = &liveTable{name: name}
			createSQL[name] = text
			return nil
		})
	if err != nil {
		return nil, err
	}
	for name, t := range live.tables {
		err := schemaQueryAll(ctx, db, `SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid`, []any{name},
			func(r *sql.Rows) error {
				var c liveColumn
				var notNull, pk int
				var dflt sql.NullString
				if err := r.Scan(&c.name, &c.typ, &notNull, &dflt, &pk); err != nil {
					return err
				}
				c.typ = strings.ToUpper(strings.Join(strings.Fields(c.typ), ""))
				c.notNull = notNull != 0
				c.primaryKey = pk > 0
				if dflt.Valid {
					c.dflt = &dflt.String
				}
				t.columns = append(t.columns, c)
				return nil
			})
		if err != nil {
			return nil, err
		}

		t.checks = sqlCheckExprs(createSQL[name])

		type fkPart struct {
			seq           int
			from, to, ref string
			onDelete      string
		}
		fkParts := map[int][]fkPart{}
		err = schemaQueryAll(ctx, db, `SELECT id, seq, "table", "from", COALESCE("to", ''), on_delete FROM pragma_foreign_key_list(?)`, []any{name},
			func(r *sql.Rows) error {
				var id int
				var p fkPart
				if err := r.Scan(&id, &p.seq, &p.ref, &p.from, &p.to, &p.onDelete); err != nil {
					return err
				}
				fkParts[id] = append(fkParts[id], p)
				return nil
			})
		if err != nil {
			return nil, err
		}
		ids := make([]int, 0, len(fkParts))
		for id := range fkParts {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			parts := fkParts[id]
			sort.Slice(parts, func(i, j int) bool { return parts[i].seq < parts[j].seq })
			var from, to []string
			for _, p := range parts {
				from = append(from, p.from)
				to = append(to, p.to)
			}
			t.fks = append(t.fks, liveFK{
				column:    strings.Join(from, ","),
				refTable:  parts[0].ref,
				refColumn: strings.Join(to, ","),
				onDelete:  strings.ToUpper(parts[0].onDelete),
			})
		}

		err = schemaQueryAll(ctx, db, `SELECT name, "unique", origin, partial FROM pragma_index_list(?) ORDER BY name`, []any{name},
			func(r *sql.Rows) error {
				var ix liveIndex
				var unique, partial int
				var origin string
				if err := r.Scan(&ix.name, &unique, &origin, &partial); err != nil {
					return err
				}
				ix.unique, ix.partial, ix.primary = unique != 0, partial != 0, origin == "pk"
				t.indexes = append(t.indexes, ix)
				return nil
			})
		if err != nil {
			return nil, err
		}
		for i := range t.indexes {
			ix := &t.indexes[i]
			err := schemaQueryAll(ctx, db, `SELECT cid, COALESCE(name, ''), "desc" FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno`, []any{ix.name},
				func(r *sql.Rows) error {
					var cid, desc int
					var col string
					if err := r.Scan(&cid, &col, &desc); err != nil {
						return err
					}
					if cid == -2 || col == "" {
						col = "(expression)"
					}
					ix.columns = append(ix.columns, seedschema.IndexColumn{Name: col, Desc: desc != 0})
					return nil
				})
			if err != nil {
				return nil, err
			}
		}

		err = schemaQueryAll(ctx, db, `SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY name`, []any{name},
			func(r *sql.Rows) error {
				var tr liveTrigger
				if err := r.Scan(&tr.name, &tr.def); err != nil {
					return err
				}
				// SQLite triggers are always FOR EACH ROW; an UPDATE OF
				// trigger fires only for the listed columns, so it does not
				// count.
				if m := sqliteTriggerEventRE.FindStringSubmatch(tr.def); m != nil {
					tr.onUpdate = strings.EqualFold(m[1], "UPDATE") && m[2] == ""
				}
				t.triggers = append(t.triggers, tr)
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	return live, nil
}

var sqliteTriggerEventRE = regexp.MustCompile(`(?is)^\s*CREATE\s+(?:TEMP(?:ORARY)?\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+(?:(?:BEFORE|AFTER|INSTEAD\s+OF)\s+)?(DELETE|INSERT|UPDATE)(\s+OF\b)?`)

// ---- PostgreSQL ----

func introspectPostgres(ctx context.Context, db *sql.DB) (*liveSchema, error) {
	live := &liveSchema{dialect: "postgres", tables: map[string]*liveTable{}}
	err := schemaQueryAll(ctx, db, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`, nil,
		func(r *sql.Rows) error {
			var name string
			if err := r.Scan(&name); err != nil {
				return err
			}
			live.tables[name] = &liveTable{name: name}
			return nil
		})
	if err != nil {
		return nil, err
	}
	get := func(name string) (*liveTable, error) {
		t, ok := live.tables[name]
		if !ok {
			return nil, fmt.Errorf("catalog row for unknown table %q", name)
		}
		return t, nil
	}

	err = schemaQueryAll(ctx, db, `SELECT table_name, column_name, data_type, character_maximum_length,
			numeric_precision, numeric_scale, is_nullable, column_default
		FROM information_schema.columns
		WHERE table_schema = current_schema()
		ORDER BY table_name, ordinal_position`, nil,
		func(r *sql.Rows) error {
			var table, nullable string
			var c liveColumn
			var charLen, prec, scale sql.NullInt64
			var dflt sql.NullString
			if err := r.Scan(&table, &c.name, &c.typ, &charLen, &prec, &scale, &nullable, &dflt); err != nil {
				return err
			}
			t, ok := live.tables[table]
			if !ok {
				return nil // a view
			}
			switch {
			case (c.typ == "character" || c.typ == "character varying") && charLen.Valid:
				c.typ = fmt.Sprintf("%s(%d)", c.typ, charLen.Int64)
			case c.typ == "numeric" && prec.Valid:
				c.typ = fmt.Sprintf("numeric(%d,%d)", prec.Int64, scale.Int64)
			}
			c.notNull = nullable == "NO"
			if dflt.Valid {
				c.dflt = &dflt.String
			}
			t.columns = append(t.columns, c)
			return nil
		})
	if err != nil {
		return nil, err
	}

	err = schemaQueryAll(ctx, db, `SELECT cl.relname, pg_get_constraintdef(co.oid)
		FROM pg_constraint co
		JOIN pg_class cl ON cl.oid = co.conrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace
		WHERE n.nspname = current_schema() AND co.contype = 'c' AND cl.relkind = 'r'
		ORDER BY cl.relname, co.conname`, nil,
		func(r *sql.Rows) error {
			var table, def string
			if err := r.Scan(&table, &def); err != nil {
				return err
			}
			t, err := get(table)
			if err != nil {
				return err
			}
			def = strings.TrimSpace(def)
			def = strings.TrimSuffix(def, " NOT VALID")
			if !strings.HasPrefix(def, "CHECK ") {
				return fmt.Errorf("%s: unexpected CHECK constraint text %q", table, def)
			}
			t.checks = append(t.checks, schemaUnwrapParens(strings.TrimPrefix(def, "CHECK ")))
			return nil
		})
	if err != nil {
		return nil, err
	}

	err = schemaQueryAll(ctx, db, `SELECT cl.relname,
			(SELECT string_agg(a.attname, ',' ORDER BY k.ord)
			   FROM unnest(co.conkey) WITH ORDINALITY AS k(attnum, ord)
			   JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum),
			rcl.relname,
			(SELECT string_agg(a.attname, ',' ORDER BY k.ord)
			   FROM unnest(co.confkey) WITH ORDINALITY AS k(attnum, ord)
			   JOIN pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.attnum),
			co.confdeltype::text
		FROM pg_constraint co
		JOIN pg_class cl ON cl.oid = co.conrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace
		JOIN pg_class rcl ON rcl.oid = co.confrelid
		WHERE n.nspname = current_schema() AND co.contype = 'f'
		ORDER BY cl.relname, co.conname`, nil,
		func(r *sql.Rows) error {
			var table, action string
			var fk liveFK
			if err := r.Scan(&table, &fk.column, &fk.refTable, &fk.refColumn, &action); err != nil {
				return err
			}
			t, err := get(table)
			if err != nil {
				return err
			}
			actions := map[string]string{"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
			fk.onDelete = actions[action]
			if fk.onDelete == "" {
				fk.onDelete = "unknown action " + action
			}
			t.fks = append(t.fks, fk)
			return nil
		})
	if err != nil {
		return nil, err
	}

	// indoption bit 0 (INDOPTION_DESC) marks a descending key column.
	err = schemaQueryAll(ctx, db, `SELECT tc.relname, ic.relname, i.indisunique, i.indisprimary, i.indpred IS NOT NULL,
			COALESCE(a.attname, ''), (k.opt & 1) = 1
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_class tc ON tc.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = tc.relnamespace
		CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indoption::int2[]) WITH ORDINALITY AS k(attnum, opt, ord)
		LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
		WHERE n.nspname = current_schema() AND tc.relkind = 'r' AND k.ord <= i.indnkeyatts
		ORDER BY tc.relname, ic.relname, k.ord`, nil,
		func(r *sql.Rows) error {
			var table, index, col string
			var unique, primary, partial, desc bool
			if err := r.Scan(&table, &index, &unique, &primary, &partial, &col, &desc); err != nil {
				return err
			}
			t, err := get(table)
			if err != nil {
				return err
			}
			if col == "" {
				col = "(expression)"
			}
			if n := len(t.indexes); n == 0 || t.indexes[n-1].name != index {
				t.indexes = append(t.indexes, liveIndex{name: index, unique: unique, primary: primary, partial: partial})
			}
			ix := &t.indexes[len(t.indexes)-1]
			ix.columns = append(ix.columns, seedschema.IndexColumn{Name: col, Desc: desc})
			if primary {
				if c, ok := t.column(col); ok {
					c.primaryKey = true
				}
			}
			return nil
		})
	if err != nil {
		return nil, err
	}

	// tgtype bit 0 is FOR EACH ROW, bit 4 is UPDATE; a non-empty tgattr
	// means UPDATE OF some columns only.
	err = schemaQueryAll(ctx, db, `SELECT cl.relname, t.tgname,
			(t.tgtype::int & 1) <> 0 AND (t.tgtype::int & 16) <> 0 AND COALESCE(array_length(t.tgattr::int2[], 1), 0) = 0,
			pg_get_triggerdef(t.oid)
		FROM pg_trigger t
		JOIN pg_class cl ON cl.oid = t.tgrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace
		WHERE n.nspname = current_schema() AND cl.relkind = 'r' AND NOT t.tgisinternal AND t.tgenabled <> 'D'
		ORDER BY cl.relname, t.tgname`, nil,
		func(r *sql.Rows) error {
			var table string
			var tr liveTrigger
			if err := r.Scan(&table, &tr.name, &tr.onUpdate, &tr.def); err != nil {
				return err
			}
			t, err := get(table)
			if err != nil {
				return err
			}
			t.triggers = append(t.triggers, tr)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return live, nil
}
