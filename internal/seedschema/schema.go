// Package seedschema reads the product's reference data model,
// docs/seed-schema.md, into plain Go values.
//
// The seed is written for people, in MySQL-flavoured SQL, while the real
// migrations target SQLite and PostgreSQL. Neither engine can run the seed, so
// drift tests compare the migrated databases against the model built here
// instead. That comparison only means something if nothing in the seed is
// lost on the way, so the parser is strict: a line it does not understand is
// an error, never skipped, because anything skipped silently would be a column
// or constraint the drift test never checks.
//
// It is deliberately not a SQL parser. It understands the line-oriented subset
// the seed is written in: CREATE TABLE statements inside ```sql fences, one
// column or constraint per line, with "--" comments; the bullet list under
// "## Encryption"; and the fenced list under "## Migrations Order". Widen it
// when the seed needs more, rather than loosening what it rejects.
package seedschema

// Schema is everything a drift test needs to know about the seed.
type Schema struct {
	// Tables keeps document order so drift reports are deterministic and
	// read like the document. It is not a valid creation order: apps and
	// backups reference tables declared after them. MigrationOrder is the
	// order to create things in.
	Tables []Table

	// EncryptedColumns lists the columns the seed says hold ciphertext.
	// They are kept apart from the column definitions because the seed
	// records this in prose, not in SQL (a trailing "-- Encrypted" comment is
	// not reliable: some encrypted columns lack it). Every entry refers to a
	// column that exists in Tables. Nil when the document has no
	// "## Encryption" section.
	EncryptedColumns []ColumnRef

	// MigrationOrder is the intended order of migration files, which the
	// drift test can hold the real migration directory to. It names more
	// tables than Tables does (sessions, password reset tokens, ...), so it
	// is not derived from, nor checked against, the CREATE TABLE statements.
	// Nil when the document has no "## Migrations Order" section.
	MigrationOrder []string
}

// Table is one CREATE TABLE statement.
type Table struct {
	Name string

	// Columns keeps declaration order so tests can check it where the
	// target engine preserves it.
	Columns []Column

	ForeignKeys []ForeignKey

	// Indexes holds INDEX/KEY and UNIQUE KEY entries, plus one unnamed
	// (Name "") unique index per column-level UNIQUE, in the order they are
	// declared. Column-level UNIQUE is folded in because SQLite and
	// PostgreSQL both implement it as an index, which is what a migrated
	// database will show. PRIMARY KEY is not listed here; see
	// Column.PrimaryKey.
	//
	// Index names are only unique per table: the seed reuses idx_status,
	// idx_created and idx_app_created across tables, which MySQL allows but
	// SQLite and PostgreSQL do not, so migrations must rename them.
	Indexes []Index
}

// Column is one column definition.
type Column struct {
	Name string

	// Type is the base type as written, upper-cased, with any size or ENUM
	// list removed ("VARCHAR", "ENUM", "BOOLEAN", ...). It is not mapped to
	// any engine's type: choosing how CHAR(26) or ENUM is represented in
	// SQLite or PostgreSQL is the drift test's decision, not the parser's.
	Type string

	// Size is the parenthesised size as written, without spaces: "26" for
	// CHAR(26), "5,2" for DECIMAL(5,2), "" when there is none.
	Size string

	// EnumValues are the unquoted values of ENUM(...), in order; the target
	// engines have no ENUM, so migrations must emulate it with a CHECK or a
	// lookup table, and tests need the list to verify that.
	EnumValues []string

	// Nullable follows MySQL's rule because the seed is MySQL: NOT NULL or
	// PRIMARY KEY make a column non-nullable; an explicit NULL, or nothing
	// at all, makes it nullable. Note that this makes many seed columns
	// nullable that were probably meant not to be (BOOLEAN ... DEFAULT
	// FALSE, created_at ... DEFAULT CURRENT_TIMESTAMP, ENUM ... DEFAULT ...).
	Nullable bool

	// PrimaryKey is set by a column-level PRIMARY KEY or by membership in a
	// table-level PRIMARY KEY (...).
	PrimaryKey bool

	// Unique is set by column-level UNIQUE only; a UNIQUE KEY over the
	// column appears in Table.Indexes but does not set it.
	Unique bool

	// Default is the DEFAULT value as written, with string literals
	// unquoted: "admin", "22", "CURRENT_TIMESTAMP", "FALSE". Keywords and
	// numbers keep the spelling the seed uses. Nil when there is no DEFAULT.
	// Because quotes are removed, DEFAULT NULL and DEFAULT 'NULL' both give
	// "NULL"; the seed uses neither.
	Default *string

	// OnUpdateCurrentTimestamp records MySQL's ON UPDATE CURRENT_TIMESTAMP,
	// which neither SQLite nor PostgreSQL have; migrations need a trigger or
	// application code for it, and tests need to know which columns.
	OnUpdateCurrentTimestamp bool

	// Comment is the trailing "-- ..." comment on the column's line,
	// trimmed, or "". It is kept because some comments carry meaning the SQL
	// does not (for example "Encrypted", "Hashed, for agent auth").
	Comment string
}

// ForeignKey is a single-column FOREIGN KEY ... REFERENCES constraint.
// Composite keys and ON UPDATE actions are rejected by Parse rather than
// represented, since the seed has neither.
type ForeignKey struct {
	Column    string
	RefTable  string
	RefColumn string
	// OnDelete is the action upper-cased with single spaces ("CASCADE",
	// "SET NULL"), or "" when the seed states none, which means MySQL's
	// default (RESTRICT/NO ACTION), not "anything goes".
	OnDelete string
}

// Index is a secondary index; see Table.Indexes for what is included.
type Index struct {
	Name    string
	Columns []IndexColumn
	Unique  bool
}

// IndexColumn is one column of an index. Desc is kept because the seed uses
// descending indexes for "most recent first" queries and migrations should
// preserve that.
type IndexColumn struct {
	Name string
	Desc bool
}

// ColumnRef names a column by table and column name.
type ColumnRef struct {
	Table  string
	Column string
}

// Table finds a table by its exact name. Names are matched case-sensitively
// because the seed writes them all in lower case, as do both target engines'
// catalogs; a case mismatch is worth noticing, not papering over.
func (s *Schema) Table(name string) (*Table, bool) {
	if s == nil {
		return nil, false
	}
	for i := range s.Tables {
		if s.Tables[i].Name == name {
			return &s.Tables[i], true
		}
	}
	return nil, false
}

// Column finds a column by its exact name; see Schema.Table for why the
// match is case-sensitive.
func (t *Table) Column(name string) (*Column, bool) {
	if t == nil {
		return nil, false
	}
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i], true
		}
	}
	return nil, false
}
