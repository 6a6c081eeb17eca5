package seedschema

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// md lets test documents be Go raw strings: § stands for a backtick.
func md(s string) []byte { return []byte(strings.ReplaceAll(s, "§", "`")) }

// table wraps SQL lines in a minimal valid document; the CREATE TABLE line
// is line 2.
func table(body string) []byte {
	return md("§§§sql\nCREATE TABLE t (\n" + body + "\n);\n§§§\n")
}

func TestParseMinimalDocument(t *testing.T) {
	s, err := Parse(table("    id INT PRIMARY KEY"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Schema{Tables: []Table{{Name: "t", Columns: []Column{{Name: "id", Type: "INT", PrimaryKey: true}}}}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if s.EncryptedColumns != nil || s.MigrationOrder != nil {
		t.Error("absent sections should leave EncryptedColumns and MigrationOrder nil")
	}
}

func TestParseVariants(t *testing.T) {
	doc := md("\ufeff# Title\r\n" +
		"\r\n" +
		"~~~~ SQL extra words\r\n" +
		"-- leading comment\r\n" +
		"CREATE TABLE IF NOT EXISTS §parent§ (\r\n" +
		"  §id§ BIGINT,\r\n" +
		"  code varchar(10) not null unique key,  -- lower-case keywords\r\n" +
		"  ratio decimal(10, 4) default -1.5,\r\n" +
		"  note TEXT DEFAULT 'it''s -- not a comment',\r\n" +
		"  kind ENUM('a,b', 'c') NOT NULL DEFAULT 'c',\r\n" +
		"  PRIMARY KEY (id),\r\n" +
		"  UNIQUE (code, kind),\r\n" +
		"  KEY (ratio ASC),\r\n" +
		") ;\r\n" +
		"~~~~\r\n" +
		"§§§sql\r\n" +
		"CREATE TABLE child (\r\n" +
		"  parent_id BIGINT NULL,\r\n" +
		"  FOREIGN KEY fk_parent (parent_id) REFERENCES parent (id) ON DELETE NO ACTION\r\n" +
		")\r\n" +
		"§§§\r\n" +
		"§§§\r\n" +
		"CREATE TABLE ignored (x INT);\r\n" +
		"§§§\r\n" +
		"## Encryption ##\r\n" +
		"* §parent.note§ and §child.parent_id§\r\n" +
		"Prose with §code§ is not a list item.\r\n" +
		"§§§\r\n" +
		"- §not.a_column§ inside a fence is ignored\r\n" +
		"§§§\r\n" +
		"### Sub-heading keeps the section\r\n" +
		"+ §parent.code§\r\n" +
		"## migrations order\r\n" +
		"§§§text\r\n" +
		"\r\n" +
		"  002_b  \r\n" +
		"001_a\r\n" +
		"§§§\r\n")
	s, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	parent, ok := s.Table("parent")
	if !ok {
		t.Fatal("table parent missing")
	}
	if _, ok := s.Table("ignored"); ok {
		t.Error("CREATE TABLE outside a sql fence was parsed")
	}
	minus := "-1.5"
	quoted := "it's -- not a comment"
	c := "c"
	wantCols := []Column{
		{Name: "id", Type: "BIGINT", PrimaryKey: true},
		{Name: "code", Type: "VARCHAR", Size: "10", Unique: true, Comment: "lower-case keywords"},
		{Name: "ratio", Type: "DECIMAL", Size: "10,4", Nullable: true, Default: &minus},
		{Name: "note", Type: "TEXT", Nullable: true, Default: &quoted},
		{Name: "kind", Type: "ENUM", EnumValues: []string{"a,b", "c"}, Default: &c},
	}
	if !reflect.DeepEqual(parent.Columns, wantCols) {
		t.Errorf("parent columns:\n got %+v\nwant %+v", parent.Columns, wantCols)
	}
	wantIdx := []Index{
		{Columns: []IndexColumn{{Name: "code"}}, Unique: true},
		{Columns: []IndexColumn{{Name: "code"}, {Name: "kind"}}, Unique: true},
		{Columns: []IndexColumn{{Name: "ratio"}}},
	}
	if !reflect.DeepEqual(parent.Indexes, wantIdx) {
		t.Errorf("parent indexes:\n got %+v\nwant %+v", parent.Indexes, wantIdx)
	}
	child, _ := s.Table("child")
	wantFK := []ForeignKey{{Column: "parent_id", RefTable: "parent", RefColumn: "id", OnDelete: "NO ACTION"}}
	if child == nil || !reflect.DeepEqual(child.ForeignKeys, wantFK) {
		t.Errorf("child = %+v, want foreign keys %+v", child, wantFK)
	}
	wantEnc := []ColumnRef{{"parent", "note"}, {"child", "parent_id"}, {"parent", "code"}}
	if !reflect.DeepEqual(s.EncryptedColumns, wantEnc) {
		t.Errorf("encrypted = %v, want %v", s.EncryptedColumns, wantEnc)
	}
	// Document order, not numeric order: checking the numbering is the
	// caller's business.
	if want := []string{"002_b", "001_a"}; !slices.Equal(s.MigrationOrder, want) {
		t.Errorf("migrations = %q, want %q", s.MigrationOrder, want)
	}
}

func TestParseErrors(t *testing.T) {
	enc := func(bullets string) []byte {
		return md("§§§sql\nCREATE TABLE t (\n  id INT,\n  secret TEXT\n);\n§§§\n## Encryption\n" + bullets + "\n")
	}
	mig := func(section string) []byte {
		return md("§§§sql\nCREATE TABLE t (\n  id INT\n);\n§§§\n" + section)
	}
	tests := []struct {
		name     string
		doc      []byte
		wantLine int
		wantMsg  string
	}{
		{"empty document", nil, 0, "no CREATE TABLE"},
		{"no sql fence", md("# x\n§§§\nCREATE TABLE t (\n id INT\n);\n§§§\n"), 0, "no CREATE TABLE"},
		{"unterminated fence", md("# x\n§§§sql\nCREATE TABLE t (\n id INT\n);\n"), 2, "never closed"},
		{"fence closed by shorter marker", md("§§§§sql\nCREATE TABLE t (\n id INT\n);\n§§§\n"), 1, "never closed"},
		{"unterminated create table", md("§§§sql\nCREATE TABLE t (\n id INT,\n§§§\n"), 2, "not terminated"},
		{"create table runs into next", md("§§§sql\nCREATE TABLE t (\n id INT\nCREATE TABLE u (\n id INT\n);\n§§§\n"), 3, "missing comma"},
		{"other statement", md("§§§sql\nCREATE INDEX i ON t (id);\n§§§\n"), 2, "unsupported statement"},
		{"one-line create table", md("§§§sql\nCREATE TABLE t (id INT);\n§§§\n"), 2, "own lines"},
		{"create without paren", md("§§§sql\nCREATE TABLE t\n§§§\n"), 2, `expected "("`},
		{"table options", md("§§§sql\nCREATE TABLE t (\n id INT\n) ENGINE=InnoDB;\n§§§\n"), 4, "closing parenthesis"},
		{"no columns", md("§§§sql\nCREATE TABLE t (\n  -- nothing\n);\n§§§\n"), 2, "no columns"},
		{"missing comma", table("  id INT\n  name TEXT"), 3, "missing comma"},
		{"unknown attribute", table("  id INT AUTO_INCREMENT"), 3, "unsupported attribute"},
		{"unsigned", table("  id INT UNSIGNED NOT NULL"), 3, "unsupported attribute"},
		{"missing type", table("  id"), 3, "expected type"},
		{"duplicate column", table("  id INT,\n  id TEXT"), 4, "already defined at line 3"},
		{"null and not null", table("  id INT NULL NOT NULL"), 3, "both NULL and NOT NULL"},
		{"not null twice", table("  id INT NOT NULL NOT NULL"), 3, "given twice"},
		{"default twice", table("  id INT DEFAULT 1 DEFAULT 2"), 3, "DEFAULT given twice"},
		{"nullable primary key", table("  id INT NULL PRIMARY KEY"), 3, "cannot be NULL"},
		{"two primary keys", table("  id INT PRIMARY KEY,\n  id2 INT PRIMARY KEY"), 4, "already has PRIMARY KEY"},
		{"column and table primary key", table("  id INT PRIMARY KEY,\n  PRIMARY KEY (id)"), 4, "both on column"},
		{"table primary key on null column", table("  id INT NULL,\n  PRIMARY KEY (id)"), 4, "declared NULL"},
		{"table primary key unknown column", table("  id INT,\n  PRIMARY KEY (nope)"), 4, "does not exist"},
		{"enum without list", table("  e ENUM NOT NULL"), 3, "without a value list"},
		{"empty enum", table("  e ENUM()"), 3, "quoted ENUM value"},
		{"unquoted enum value", table("  e ENUM(a, b)"), 3, "quoted ENUM value"},
		{"duplicate enum value", table("  e ENUM('a', 'a')"), 3, "duplicate ENUM value"},
		{"enum default not a value", table("  e ENUM('a', 'b') DEFAULT 'c'"), 3, "not one of its ENUM values"},
		{"bad size", table("  v VARCHAR(abc)"), 3, "expected a size"},
		{"unclosed size", table("  v VARCHAR(10"), 3, `expected ","`},
		{"default expression", table("  t TIMESTAMP DEFAULT NOW()"), 3, "unsupported DEFAULT"},
		{"default function call", table("  t TIMESTAMP DEFAULT CURRENT_TIMESTAMP(3)"), 3, "not supported"},
		{"default missing", table("  t INT DEFAULT"), 3, "without a value"},
		{"default null on not null", table("  t INT NOT NULL DEFAULT NULL"), 3, "DEFAULT NULL"},
		{"default null on primary key", table("  t INT PRIMARY KEY DEFAULT null"), 3, "DEFAULT NULL"},
		{"on update other", table("  t TIMESTAMP ON UPDATE NOW"), 3, "only ON UPDATE CURRENT_TIMESTAMP"},
		{"unterminated string", table("  v TEXT DEFAULT 'abc"), 3, "unterminated ' quote"},
		{"backslash escape", table(`  v TEXT DEFAULT 'a\'b'`), 3, "backslash"},
		{"unexpected character", table("  v TEXT /* c */"), 3, "unexpected character"},
		{"hash comment", table("  v TEXT # c"), 3, "unexpected character"},
		{"double dash without space", table("  v INT DEFAULT --1"), 3, "number after DEFAULT"},
		{"constraint clause", table("  id INT,\n  CONSTRAINT c UNIQUE (id)"), 4, "CONSTRAINT definitions are not supported"},
		{"index unknown column", table("  id INT,\n  INDEX idx (nope)"), 4, "does not exist"},
		{"index duplicate name", table("  id INT,\n  INDEX i (id),\n  UNIQUE KEY i (id)"), 5, "defined twice"},
		{"index column twice", table("  id INT,\n  INDEX i (id, id)"), 4, "listed twice"},
		{"index prefix length", table("  v TEXT,\n  INDEX i (v(10))"), 4, "index i"},
		{"index trailing garbage", table("  id INT,\n  INDEX i (id) USING BTREE"), 4, "unexpected"},
		{"foreign key unknown table", table("  id INT,\n  FOREIGN KEY (id) REFERENCES nope(id)"), 4, "unknown table"},
		{"foreign key unknown ref column", table("  id INT,\n  FOREIGN KEY (id) REFERENCES t(nope)"), 4, "unknown column t.nope"},
		{"foreign key unknown column", table("  id INT,\n  FOREIGN KEY (nope) REFERENCES t(id)"), 4, "does not exist"},
		{"foreign key composite", table("  a INT,\n  b INT,\n  FOREIGN KEY (a, b) REFERENCES t(a, b)"), 5, "composite"},
		{"foreign key on update", table("  id INT,\n  FOREIGN KEY (id) REFERENCES t(id) ON UPDATE CASCADE"), 4, "ON UPDATE"},
		{"foreign key bad action", table("  id INT,\n  FOREIGN KEY (id) REFERENCES t(id) ON DELETE EXPLODE"), 4, "ON DELETE action"},
		{"foreign key twice", table("  id INT,\n  FOREIGN KEY (id) REFERENCES t(id),\n  FOREIGN KEY (id) REFERENCES t(id)"), 5, "second foreign key"},
		{"duplicate table", md("§§§sql\nCREATE TABLE t (\n id INT\n);\nCREATE TABLE t (\n id INT\n);\n§§§\n"), 5, "already defined at line 2"},
		{"encryption unknown table", enc("- §u.secret§"), 8, "no such table"},
		{"encryption unknown column", enc("- §t.nope§"), 8, "no such column"},
		{"encryption not a ref", enc("- §secret§"), 8, "table.column"},
		{"encryption no code span", enc("- t.secret"), 8, "names no"},
		{"encryption unclosed span", enc("- §t.secret"), 8, "unclosed code span"},
		{"encryption duplicate", enc("- §t.secret§\n- §t.secret§"), 9, "already listed as encrypted at line 8"},
		{"encryption empty", enc("Nothing is encrypted."), 7, "lists no columns"},
		{"encryption twice", enc("- §t.secret§\n## Encryption\n- §t.id§"), 9, "second"},
		{"migrations without block", mig("## Migrations Order\n\n001_a\n"), 6, "no code block"},
		{"migrations empty block", mig("## Migrations Order\n§§§\n\n§§§\n"), 7, "empty"},
		{"migration bad name", mig("## Migrations Order\n§§§\n001 create users\n§§§\n"), 8, "NNN_name"},
		{"migration duplicate", mig("## Migrations Order\n§§§\n001_a\n001_a\n§§§\n"), 9, "already listed at line 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.doc)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want error containing %q", s, tt.wantMsg)
			}
			if s != nil {
				t.Errorf("Parse returned a schema alongside error %v", err)
			}
			var pe *parseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, want *parseError", err, err)
			}
			if pe.line != tt.wantLine {
				t.Errorf("error %q reported at line %d, want %d", err, pe.line, tt.wantLine)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "seedschema: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestParseEnumDefaultNull(t *testing.T) {
	s, err := Parse(table("  e ENUM('a') DEFAULT NULL"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Tables[0].Columns[0]; c.Default == nil || *c.Default != "NULL" || !c.Nullable {
		t.Errorf("column = %+v, want nullable with Default \"NULL\"", c)
	}
	if _, err := Parse(table("  e ENUM('a') DEFAULT 'NULL'")); err == nil {
		t.Error("the string 'NULL' is not an ENUM value here and should be rejected")
	}
}

func TestParseTrailingCommaOnLastDefinition(t *testing.T) {
	// Invalid MySQL, but nothing is lost, so it is tolerated.
	s, err := Parse(table("  id INT,\n  name TEXT,"))
	if err != nil {
		t.Fatal(err)
	}
	if got := columnNames(&s.Tables[0]); !slices.Equal(got, []string{"id", "name"}) {
		t.Errorf("columns = %q", got)
	}
}

func TestParseDoesNotModifyInput(t *testing.T) {
	doc := table("  id INT PRIMARY KEY, -- c")
	orig := slices.Clone(doc)
	if _, err := Parse(doc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(doc, orig) {
		t.Error("Parse modified its input")
	}
}
