package seedschema

import (
	"fmt"
	"strings"
)

// parsedTable is a table plus the line of its CREATE TABLE, for messages.
type parsedTable struct {
	table  Table
	line   int
	fkLine []int // parallels table.ForeignKeys
}

// parseSQLBlock reads every CREATE TABLE in one ```sql block. Outside a
// statement only blank lines and "--" comment lines are allowed: any other
// statement would be schema the model cannot hold.
func parseSQLBlock(b fencedBlock) ([]parsedTable, error) {
	var (
		out []parsedTable
		cur *tableBuilder
	)
	for _, ln := range b.body {
		code, comment := splitComment(ln.text)
		code = strings.TrimSpace(code)
		if cur == nil {
			if code == "" {
				continue
			}
			name, err := parseCreateTable(code)
			if err != nil {
				return nil, errorf(ln.num, "%v", err)
			}
			cur = newTableBuilder(name, ln.num)
			continue
		}
		if code == "" {
			continue // blank line or a "-- Section" comment inside the body
		}
		if strings.HasPrefix(code, ")") {
			rest := strings.TrimSpace(code[1:])
			if rest != "" && rest != ";" {
				return nil, errorf(ln.num, "unsupported text after the closing parenthesis of %s: %q", cur.t.Name, rest)
			}
			t, err := cur.finish()
			if err != nil {
				return nil, err
			}
			out = append(out, parsedTable{table: t, line: cur.line, fkLine: cur.fkLine})
			cur = nil
			continue
		}
		if err := cur.addLine(ln.num, code, comment); err != nil {
			return nil, err
		}
	}
	if cur != nil {
		return nil, errorf(cur.line, "CREATE TABLE %s is not terminated by \");\" before the end of its code block", cur.t.Name)
	}
	return out, nil
}

// splitComment separates a line into SQL and the text of a trailing "--"
// comment, ignoring "--" inside quoted strings and identifiers. Unbalanced
// quotes are left for the tokenizer to report.
func splitComment(line string) (code, comment string) {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0 // a doubled quote re-opens on the next byte
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '-' && i+1 < len(line) && line[i+1] == '-':
			// MySQL only treats "--" as a comment when followed by
			// whitespace; "--1" is left for the tokenizer to reject.
			if i+2 == len(line) || line[i+2] == ' ' || line[i+2] == '\t' {
				return line[:i], strings.TrimSpace(line[i+2:])
			}
		}
	}
	return line, ""
}

type tokKind int

const (
	tokWord   tokKind = iota // keyword, bare identifier or number
	tokString                // '...' or "..." literal, unquoted
	tokQuoted                // `...` identifier, unquoted
	tokPunct                 // ( ) , ; - +
)

type token struct {
	kind tokKind
	text string
}

func (t token) String() string {
	switch t.kind {
	case tokString:
		return "'" + t.text + "'"
	case tokQuoted:
		return "`" + t.text + "`"
	}
	return t.text
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c == '.' ||
		(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func tokenize(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j]})
			i = j
		case c == '(' || c == ')' || c == ',' || c == ';' || c == '-' || c == '+':
			toks = append(toks, token{tokPunct, string(c)})
			i++
		case c == '\'' || c == '"' || c == '`':
			var sb strings.Builder
			j := i + 1
			closed := false
			for j < len(s) {
				if s[j] == '\\' && c != '`' {
					return nil, fmt.Errorf("backslash escapes in string literals are not supported")
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						sb.WriteByte(c)
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				sb.WriteByte(s[j])
				j++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated %c quote", c)
			}
			kind := tokString
			if c == '`' {
				kind = tokQuoted
			}
			toks = append(toks, token{kind, sb.String()})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	return toks, nil
}

// cursor walks the tokens of one line.
type cursor struct {
	toks []token
	pos  int
}

func (c *cursor) done() bool { return c.pos >= len(c.toks) }

func (c *cursor) peek() (token, bool) {
	if c.done() {
		return token{}, false
	}
	return c.toks[c.pos], true
}

// isKeyword reports whether t is the bare word kw, case-insensitively.
func isKeyword(t token, kw string) bool {
	return t.kind == tokWord && strings.EqualFold(t.text, kw)
}

// accept consumes the given keywords or punctuation, in order, if all of
// them are next; otherwise it consumes nothing.
func (c *cursor) accept(words ...string) bool {
	if c.pos+len(words) > len(c.toks) {
		return false
	}
	for i, w := range words {
		t := c.toks[c.pos+i]
		if !isKeyword(t, w) && !(t.kind == tokPunct && t.text == w) {
			return false
		}
	}
	c.pos += len(words)
	return true
}

func (c *cursor) expect(words ...string) error {
	if c.accept(words...) {
		return nil
	}
	return fmt.Errorf("expected %q, found %s", strings.Join(words, " "), c.describeNext())
}

func (c *cursor) describeNext() string {
	t, ok := c.peek()
	if !ok {
		return "end of line"
	}
	return fmt.Sprintf("%q", t.String())
}

// ident consumes an identifier: a bare word that is a valid name, or a
// backquoted one.
func (c *cursor) ident(what string) (string, error) {
	t, ok := c.peek()
	if ok && ((t.kind == tokWord && identRE.MatchString(t.text)) || (t.kind == tokQuoted && t.text != "")) {
		c.pos++
		return t.text, nil
	}
	return "", fmt.Errorf("expected %s, found %s", what, c.describeNext())
}

func (c *cursor) end() error {
	if c.done() {
		return nil
	}
	return fmt.Errorf("unexpected %s", c.describeNext())
}

// parseCreateTable reads `CREATE TABLE [IF NOT EXISTS] name (`, which must be
// the whole line: the body is read one definition per line.
func parseCreateTable(code string) (string, error) {
	toks, err := tokenize(code)
	if err != nil {
		return "", err
	}
	c := &cursor{toks: toks}
	if !c.accept("CREATE", "TABLE") {
		return "", fmt.Errorf("unsupported statement outside CREATE TABLE: %q", code)
	}
	c.accept("IF", "NOT", "EXISTS")
	name, err := c.ident("table name")
	if err != nil {
		return "", err
	}
	if err := c.expect("("); err != nil {
		return "", fmt.Errorf("CREATE TABLE %s: %v (the opening line must end with \"(\")", name, err)
	}
	if err := c.end(); err != nil {
		return "", fmt.Errorf("CREATE TABLE %s: %v (definitions go on their own lines)", name, err)
	}
	return name, nil
}

// tableBuilder accumulates one CREATE TABLE body.
type tableBuilder struct {
	t    Table
	line int

	columnLine   map[string]int
	explicitNull map[string]bool
	tablePK      []string
	tablePKLine  int
	pkColumn     string

	// fkLine and indexLine parallel t.ForeignKeys and t.Indexes, so that
	// checks made in finish can point at the right line.
	fkLine    []int
	indexLine []int

	// lastLine is the previous definition's line number and whether it
	// ended in a comma, to catch a missing separator. A comma after the
	// last definition is tolerated: MySQL rejects it, but nothing is lost.
	lastLine  int
	lastComma bool
}

func newTableBuilder(name string, line int) *tableBuilder {
	return &tableBuilder{
		t:            Table{Name: name},
		line:         line,
		columnLine:   map[string]int{},
		explicitNull: map[string]bool{},
	}
}

func (b *tableBuilder) addLine(num int, code, comment string) error {
	if b.lastLine != 0 && !b.lastComma {
		return errorf(b.lastLine, "table %s: missing comma at end of definition (each definition must fit on one line)", b.t.Name)
	}
	def, comma := strings.CutSuffix(code, ",")
	b.lastLine, b.lastComma = num, comma
	toks, err := tokenize(def)
	if err != nil {
		return errorf(num, "table %s: %v", b.t.Name, err)
	}
	if len(toks) == 0 {
		return errorf(num, "table %s: empty definition", b.t.Name)
	}
	c := &cursor{toks: toks}
	first := toks[0]
	if first.kind == tokWord {
		switch strings.ToUpper(first.text) {
		case "INDEX", "KEY":
			c.pos++
			err = b.addIndex(c, num, false)
		case "UNIQUE":
			c.pos++
			if !c.accept("KEY") {
				c.accept("INDEX")
			}
			err = b.addIndex(c, num, true)
		case "FOREIGN":
			err = b.addForeignKey(c, num)
		case "PRIMARY":
			err = b.addTablePrimaryKey(c, num)
		case "CONSTRAINT", "CHECK", "FULLTEXT", "SPATIAL":
			err = fmt.Errorf("%s definitions are not supported", strings.ToUpper(first.text))
		default:
			err = b.addColumn(c, num, comment)
		}
	} else {
		err = b.addColumn(c, num, comment)
	}
	if err != nil {
		return errorf(num, "table %s: %v", b.t.Name, err)
	}
	return nil
}

func (b *tableBuilder) addColumn(c *cursor, num int, comment string) error {
	name, err := c.ident("column name")
	if err != nil {
		return err
	}
	if prev, dup := b.columnLine[name]; dup {
		return fmt.Errorf("column %s already defined at line %d", name, prev)
	}
	col := Column{Name: name, Comment: comment}

	typ, err := c.ident("type of column " + name)
	if err != nil {
		return err
	}
	col.Type = strings.ToUpper(typ)
	if c.accept("(") {
		if col.Type == "ENUM" {
			col.EnumValues, err = enumValues(c, name)
		} else {
			col.Size, err = sizeSpec(c, name)
		}
		if err != nil {
			return err
		}
	} else if col.Type == "ENUM" {
		return fmt.Errorf("column %s: ENUM without a value list", name)
	}

	var notNull, null, unique, pk, defaultNull bool
	once := func(seen *bool, what string) error {
		if *seen {
			return fmt.Errorf("column %s: %s given twice", name, what)
		}
		*seen = true
		return nil
	}
	for !c.done() {
		switch {
		case c.accept("NOT", "NULL"):
			err = once(&notNull, "NOT NULL")
		case c.accept("NULL"):
			err = once(&null, "NULL")
		case c.accept("PRIMARY", "KEY"):
			err = once(&pk, "PRIMARY KEY")
		case c.accept("UNIQUE"):
			if !c.accept("KEY") {
				c.accept("INDEX")
			}
			err = once(&unique, "UNIQUE")
		case c.accept("DEFAULT"):
			if col.Default != nil {
				return fmt.Errorf("column %s: DEFAULT given twice", name)
			}
			var v string
			v, defaultNull, err = defaultValue(c, name)
			col.Default = &v
		case c.accept("ON", "UPDATE"):
			if !c.accept("CURRENT_TIMESTAMP") {
				return fmt.Errorf("column %s: only ON UPDATE CURRENT_TIMESTAMP is supported, found %s", name, c.describeNext())
			}
			err = once(&col.OnUpdateCurrentTimestamp, "ON UPDATE")
		default:
			return fmt.Errorf("column %s: unsupported attribute %s", name, c.describeNext())
		}
		if err != nil {
			return err
		}
	}

	if notNull && null {
		return fmt.Errorf("column %s: both NULL and NOT NULL", name)
	}
	if pk && null {
		return fmt.Errorf("column %s: a PRIMARY KEY column cannot be NULL", name)
	}
	if pk {
		if b.pkColumn != "" {
			return fmt.Errorf("column %s: table already has PRIMARY KEY on %s", name, b.pkColumn)
		}
		b.pkColumn = name
	}
	if defaultNull && (notNull || pk) {
		return fmt.Errorf("column %s: DEFAULT NULL on a NOT NULL or PRIMARY KEY column", name)
	}
	if col.Default != nil && !defaultNull && col.Type == "ENUM" && !contains(col.EnumValues, *col.Default) {
		return fmt.Errorf("column %s: DEFAULT %q is not one of its ENUM values", name, *col.Default)
	}
	col.Nullable = !notNull && !pk
	col.PrimaryKey = pk
	col.Unique = unique

	b.columnLine[name] = num
	b.explicitNull[name] = null
	b.t.Columns = append(b.t.Columns, col)
	if unique {
		b.t.Indexes = append(b.t.Indexes, Index{Columns: []IndexColumn{{Name: name}}, Unique: true})
		b.indexLine = append(b.indexLine, num)
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// enumValues reads the quoted values after "ENUM(".
func enumValues(c *cursor, col string) ([]string, error) {
	var vals []string
	for {
		t, ok := c.peek()
		if !ok || t.kind != tokString {
			return nil, fmt.Errorf("column %s: expected a quoted ENUM value, found %s", col, c.describeNext())
		}
		c.pos++
		if contains(vals, t.text) {
			return nil, fmt.Errorf("column %s: duplicate ENUM value %q", col, t.text)
		}
		vals = append(vals, t.text)
		if c.accept(")") {
			return vals, nil
		}
		if err := c.expect(","); err != nil {
			return nil, fmt.Errorf("column %s: %v", col, err)
		}
	}
}

// sizeSpec reads the unsigned integers after "TYPE(", joining them with ",".
func sizeSpec(c *cursor, col string) (string, error) {
	var parts []string
	for {
		t, ok := c.peek()
		if !ok || t.kind != tokWord || !isDigits(t.text) {
			return "", fmt.Errorf("column %s: expected a size, found %s", col, c.describeNext())
		}
		c.pos++
		parts = append(parts, t.text)
		if c.accept(")") {
			return strings.Join(parts, ","), nil
		}
		if err := c.expect(","); err != nil {
			return "", fmt.Errorf("column %s: %v", col, err)
		}
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isNumber(s string) bool {
	whole, frac, hasDot := strings.Cut(s, ".")
	if !hasDot {
		return isDigits(whole)
	}
	return (whole == "" || isDigits(whole)) && isDigits(frac)
}

// defaultValue reads one DEFAULT value: a string literal, an optionally
// signed number, or one of the keywords the seed can sensibly use. Anything
// else (expressions, function calls) is rejected so it cannot be mistaken
// for a literal. isNull reports the NULL keyword, which the returned string
// cannot tell apart from the literal 'NULL'.
func defaultValue(c *cursor, col string) (v string, isNull bool, err error) {
	t, ok := c.peek()
	if !ok {
		return "", false, fmt.Errorf("column %s: DEFAULT without a value", col)
	}
	c.pos++
	switch {
	case t.kind == tokString:
		return t.text, false, nil
	case t.kind == tokPunct && (t.text == "-" || t.text == "+"):
		n, ok := c.peek()
		if !ok || n.kind != tokWord || !isNumber(n.text) {
			return "", false, fmt.Errorf("column %s: expected a number after DEFAULT %s, found %s", col, t.text, c.describeNext())
		}
		c.pos++
		if t.text == "+" {
			return n.text, false, nil
		}
		return "-" + n.text, false, nil
	case t.kind == tokWord && isNumber(t.text):
		return t.text, false, nil
	case t.kind == tokWord:
		switch strings.ToUpper(t.text) {
		case "CURRENT_TIMESTAMP", "NULL", "TRUE", "FALSE":
			if n, ok := c.peek(); ok && n.kind == tokPunct && n.text == "(" {
				return "", false, fmt.Errorf("column %s: DEFAULT %s(...) is not supported", col, t.text)
			}
			return t.text, strings.EqualFold(t.text, "NULL"), nil
		}
	}
	return "", false, fmt.Errorf("column %s: unsupported DEFAULT value %q", col, t.String())
}

// indexColumns reads "(col [ASC|DESC], ...)".
func indexColumns(c *cursor) ([]IndexColumn, error) {
	if err := c.expect("("); err != nil {
		return nil, err
	}
	var cols []IndexColumn
	for {
		name, err := c.ident("column name")
		if err != nil {
			return nil, err
		}
		ic := IndexColumn{Name: name}
		if c.accept("DESC") {
			ic.Desc = true
		} else {
			c.accept("ASC")
		}
		for _, prev := range cols {
			if prev.Name == name {
				return nil, fmt.Errorf("column %s listed twice", name)
			}
		}
		cols = append(cols, ic)
		if c.accept(")") {
			return cols, nil
		}
		if err := c.expect(","); err != nil {
			return nil, err
		}
	}
}

func (b *tableBuilder) addIndex(c *cursor, num int, unique bool) error {
	idx := Index{Unique: unique}
	if t, ok := c.peek(); ok && !(t.kind == tokPunct && t.text == "(") {
		name, err := c.ident("index name")
		if err != nil {
			return err
		}
		idx.Name = name
	}
	cols, err := indexColumns(c)
	if err != nil {
		return fmt.Errorf("index %s: %v", idx.Name, err)
	}
	if err := c.end(); err != nil {
		return fmt.Errorf("index %s: %v", idx.Name, err)
	}
	idx.Columns = cols
	if idx.Name != "" {
		for _, prev := range b.t.Indexes {
			if prev.Name == idx.Name {
				return fmt.Errorf("index %s defined twice", idx.Name)
			}
		}
	}
	b.t.Indexes = append(b.t.Indexes, idx)
	b.indexLine = append(b.indexLine, num)
	return nil
}

func (b *tableBuilder) addForeignKey(c *cursor, num int) error {
	if err := c.expect("FOREIGN", "KEY"); err != nil {
		return err
	}
	if t, ok := c.peek(); ok && !(t.kind == tokPunct && t.text == "(") {
		if _, err := c.ident("foreign key name"); err != nil {
			return err
		}
	}
	var fk ForeignKey
	var err error
	if err = c.expect("("); err != nil {
		return fmt.Errorf("foreign key: %v", err)
	}
	if fk.Column, err = c.ident("column name"); err != nil {
		return fmt.Errorf("foreign key: %v", err)
	}
	if err = c.expect(")"); err != nil {
		return fmt.Errorf("foreign key on %s: %v (composite foreign keys are not supported)", fk.Column, err)
	}
	if err = c.expect("REFERENCES"); err != nil {
		return fmt.Errorf("foreign key on %s: %v", fk.Column, err)
	}
	if fk.RefTable, err = c.ident("referenced table"); err != nil {
		return fmt.Errorf("foreign key on %s: %v", fk.Column, err)
	}
	if err = c.expect("("); err != nil {
		return fmt.Errorf("foreign key on %s: %v", fk.Column, err)
	}
	if fk.RefColumn, err = c.ident("referenced column"); err != nil {
		return fmt.Errorf("foreign key on %s: %v", fk.Column, err)
	}
	if err = c.expect(")"); err != nil {
		return fmt.Errorf("foreign key on %s: %v (composite foreign keys are not supported)", fk.Column, err)
	}
	if c.accept("ON", "DELETE") {
		switch {
		case c.accept("CASCADE"):
			fk.OnDelete = "CASCADE"
		case c.accept("SET", "NULL"):
			fk.OnDelete = "SET NULL"
		case c.accept("SET", "DEFAULT"):
			fk.OnDelete = "SET DEFAULT"
		case c.accept("RESTRICT"):
			fk.OnDelete = "RESTRICT"
		case c.accept("NO", "ACTION"):
			fk.OnDelete = "NO ACTION"
		default:
			return fmt.Errorf("foreign key on %s: unsupported ON DELETE action %s", fk.Column, c.describeNext())
		}
	}
	if c.accept("ON", "UPDATE") {
		return fmt.Errorf("foreign key on %s: ON UPDATE actions are not supported", fk.Column)
	}
	if err := c.end(); err != nil {
		return fmt.Errorf("foreign key on %s: %v", fk.Column, err)
	}
	for _, prev := range b.t.ForeignKeys {
		if prev.Column == fk.Column {
			return fmt.Errorf("second foreign key on %s", fk.Column)
		}
	}
	b.t.ForeignKeys = append(b.t.ForeignKeys, fk)
	b.fkLine = append(b.fkLine, num)
	return nil
}

func (b *tableBuilder) addTablePrimaryKey(c *cursor, num int) error {
	if err := c.expect("PRIMARY", "KEY"); err != nil {
		return err
	}
	if b.tablePKLine != 0 {
		return fmt.Errorf("second PRIMARY KEY (the first is at line %d)", b.tablePKLine)
	}
	cols, err := indexColumns(c)
	if err != nil {
		return fmt.Errorf("primary key: %v", err)
	}
	if err := c.end(); err != nil {
		return fmt.Errorf("primary key: %v", err)
	}
	for _, ic := range cols {
		b.tablePK = append(b.tablePK, ic.Name)
	}
	b.tablePKLine = num
	return nil
}

// finish checks that everything the constraints mention exists, now that all
// columns are known (MySQL allows constraints before the columns they use).
func (b *tableBuilder) finish() (Table, error) {
	t := b.t
	if len(t.Columns) == 0 {
		return Table{}, errorf(b.line, "table %s has no columns", t.Name)
	}
	if len(b.tablePK) > 0 {
		if b.pkColumn != "" {
			return Table{}, errorf(b.tablePKLine, "table %s: PRIMARY KEY given both on column %s and as a table constraint", t.Name, b.pkColumn)
		}
		for _, name := range b.tablePK {
			col, ok := t.Column(name)
			if !ok {
				return Table{}, errorf(b.tablePKLine, "table %s: primary key column %s does not exist", t.Name, name)
			}
			if b.explicitNull[name] {
				return Table{}, errorf(b.tablePKLine, "table %s: primary key column %s is declared NULL", t.Name, name)
			}
			col.PrimaryKey = true
			col.Nullable = false
		}
	}
	for i, fk := range t.ForeignKeys {
		if _, ok := t.Column(fk.Column); !ok {
			return Table{}, errorf(b.fkLine[i], "table %s: foreign key column %s does not exist", t.Name, fk.Column)
		}
	}
	for i, idx := range t.Indexes {
		for _, ic := range idx.Columns {
			if _, ok := t.Column(ic.Name); !ok {
				return Table{}, errorf(b.indexLine[i], "table %s: index %s uses column %s, which does not exist", t.Name, idx.Name, ic.Name)
			}
		}
	}
	return t, nil
}
