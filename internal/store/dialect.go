package store

import (
	"errors"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is the whole of what differs between the databases UPanel runs on.
// Queries are written once with ? placeholders; migrations are written once as
// templates whose few type and trigger differences are filled in from here.
// MySQL/MariaDB, the seed's own dialect, is a third value of this struct.
type dialect struct {
	name string
	// numbered placeholders ($1, $2...) instead of ?
	numbered bool
	// timeAsText stores timestamps as fixed-width UTC text, so that they sort
	// and compare as text (SQLite has no timestamp type).
	timeAsText bool
	// skipLocked is appended to the claim subquery so that concurrent panel
	// processes never claim one job twice and never wait on each other.
	skipLocked string
	// timeParam is a placeholder typed as a timestamp, for spots where
	// PostgreSQL cannot infer a parameter's type (inside CASE).
	timeParam string
	// epoch is an expression for a timestamp column in Unix seconds.
	epoch func(col string) string
	// timestampType is the column type of every timestamp.
	timestampType string
	// migration template functions
	tmpl template.FuncMap
}

// sqliteTimeLayout is fixed-width, so text order is time order; it is also what
// strftime('%Y-%m-%d %H:%M:%f','now') produces for column defaults.
const sqliteTimeLayout = "2006-01-02 15:04:05.000"

var sqliteDialect = &dialect{
	name:          "sqlite",
	timeAsText:    true,
	timestampType: "TIMESTAMP",
	timeParam:     "?",
	epoch:         func(col string) string { return "CAST(strftime('%s', " + col + ") AS INTEGER)" },
	tmpl: template.FuncMap{
		"ts":  constant("TIMESTAMP"), // keep in step with timestampType
		"now": constant("(strftime('%Y-%m-%d %H:%M:%f','now'))"),
		"json": func(col string) string {
			return "TEXT CHECK (" + col + " IS NULL OR json_valid(" + col + "))"
		},
		"updatedAtFunction": constant(""),
		"updatedAt": func(table string) string {
			return "CREATE TRIGGER trg_" + table + "_updated_at AFTER UPDATE ON " + table +
				" FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at BEGIN UPDATE " + table +
				" SET updated_at = strftime('%Y-%m-%d %H:%M:%f','now') WHERE id = NEW.id; END;"
		},
	},
}

var postgresDialect = &dialect{
	name:          "postgres",
	numbered:      true,
	timestampType: "TIMESTAMPTZ",
	timeParam:     "CAST(? AS TIMESTAMPTZ)",
	epoch:         func(col string) string { return "CAST(EXTRACT(EPOCH FROM " + col + ") AS BIGINT)" },
	skipLocked:    " FOR UPDATE SKIP LOCKED",
	tmpl: template.FuncMap{
		"ts":  constant("TIMESTAMPTZ"), // keep in step with timestampType
		"now": constant("CURRENT_TIMESTAMP"),
		// JSON, not JSONB: JSONB rewrites key order, and the activity log's hash
		// chain needs the exact bytes back.
		"json": func(string) string { return "JSON" },
		// MySQL's ON UPDATE CURRENT_TIMESTAMP: bump updated_at unless the
		// statement set it itself.
		"updatedAtFunction": constant(`CREATE OR REPLACE FUNCTION upanel_set_updated_at() RETURNS trigger AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at = CURRENT_TIMESTAMP;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;`),
		"updatedAt": func(table string) string {
			return "CREATE TRIGGER trg_" + table + "_updated_at BEFORE UPDATE ON " + table +
				" FOR EACH ROW EXECUTE FUNCTION upanel_set_updated_at();"
		},
	},
}

// rebind turns ? placeholders into $n for PostgreSQL. Queries in this package
// never put a ? inside a string literal; rebind still skips quoted text.
func (d *dialect) rebind(q string) string {
	if !d.numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// args converts Go values into what the dialect stores: UTC timestamps cut to
// milliseconds on both, as text on SQLite.
func (d *dialect) args(args []any) []any {
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			args[i] = d.timeArg(v)
		case *time.Time:
			if v == nil {
				args[i] = nil
			} else {
				args[i] = d.timeArg(*v)
			}
		}
	}
	return args
}

func (d *dialect) timeArg(t time.Time) any {
	t = t.UTC().Truncate(time.Millisecond)
	if d.timeAsText {
		return t.Format(sqliteTimeLayout)
	}
	return t
}

func constant(s string) func() string { return func() string { return s } }

// isUniqueViolation reports a unique-constraint error from either driver.
func isUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		return lite.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || lite.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
