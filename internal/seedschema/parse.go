package seedschema

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// The two level-2 sections whose prose, not SQL, carries schema facts.
// Headings are compared case-insensitively after trimming.
const (
	encryptionSection = "encryption"
	migrationsSection = "migrations order"
)

var (
	identRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	columnRefRE = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$`)
	migrationRE = regexp.MustCompile(`^[0-9]+_[A-Za-z0-9_]+$`)
	headingRE   = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$`)
)

// parseError carries the 1-based line of the markdown document, because the
// person fixing the seed needs to know where to look.
type parseError struct {
	line int
	msg  string
}

func (e *parseError) Error() string {
	if e.line <= 0 {
		return "seedschema: " + e.msg
	}
	return fmt.Sprintf("seedschema: line %d: %s", e.line, e.msg)
}

func errorf(line int, format string, args ...any) error {
	return &parseError{line: line, msg: fmt.Sprintf(format, args...)}
}

// srcLine is one line of the document with its 1-based number.
type srcLine struct {
	num  int
	text string
}

// fencedBlock is a fenced code block, with the level-2 section it sits in.
type fencedBlock struct {
	info    string // first word of the info string, lower-cased
	open    int    // line number of the opening fence
	section string // normalised level-2 heading, "" before the first one
	body    []srcLine
}

// document is the markdown reduced to what Parse needs.
type document struct {
	blocks []fencedBlock
	// bullets are list items found in the Encryption section, outside
	// fences.
	bullets []srcLine
	// sectionLine records where the interesting sections start, so a
	// section with no usable content can be reported at its heading.
	sectionLine map[string]int
}

// Parse reads the seed markdown. It returns an error, never a partial
// schema, when the document contains something it cannot represent
// faithfully; see the package documentation for why.
func Parse(markdown []byte) (*Schema, error) {
	doc, err := scanMarkdown(splitLines(markdown))
	if err != nil {
		return nil, err
	}

	s := &Schema{}
	tableLine := map[string]int{}
	fkLines := map[string][]int{}
	for _, b := range doc.blocks {
		if b.info != "sql" {
			continue
		}
		tables, err := parseSQLBlock(b)
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			if prev, dup := tableLine[t.table.Name]; dup {
				return nil, errorf(t.line, "table %q already defined at line %d", t.table.Name, prev)
			}
			tableLine[t.table.Name] = t.line
			fkLines[t.table.Name] = t.fkLine
			s.Tables = append(s.Tables, t.table)
		}
	}
	if len(s.Tables) == 0 {
		return nil, errorf(0, "no CREATE TABLE statement found in any ```sql block")
	}
	if err := checkForeignKeys(s, fkLines); err != nil {
		return nil, err
	}

	if s.EncryptedColumns, err = parseEncryption(s, doc); err != nil {
		return nil, err
	}
	if s.MigrationOrder, err = parseMigrations(doc); err != nil {
		return nil, err
	}
	return s, nil
}

func splitLines(b []byte) []srcLine {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	raw := strings.Split(string(b), "\n")
	if len(raw) > 0 && raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}
	lines := make([]srcLine, len(raw))
	for i, t := range raw {
		lines[i] = srcLine{num: i + 1, text: strings.TrimSuffix(t, "\r")}
	}
	return lines
}

// openingFence reports whether text opens a CommonMark fenced code block.
func openingFence(text string) (marker string, info string, ok bool) {
	indent := len(text) - len(strings.TrimLeft(text, " "))
	if indent > 3 {
		return "", "", false
	}
	rest := text[indent:]
	if rest == "" || (rest[0] != '`' && rest[0] != '~') {
		return "", "", false
	}
	n := 0
	for n < len(rest) && rest[n] == rest[0] {
		n++
	}
	if n < 3 {
		return "", "", false
	}
	info = strings.TrimSpace(rest[n:])
	if rest[0] == '`' && strings.Contains(info, "`") {
		return "", "", false
	}
	return rest[:n], info, true
}

// closesFence reports whether text closes a fence opened with marker.
func closesFence(text, marker string) bool {
	indent := len(text) - len(strings.TrimLeft(text, " "))
	if indent > 3 {
		return false
	}
	rest := strings.TrimRight(text[indent:], " \t")
	if len(rest) < len(marker) {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] != marker[0] {
			return false
		}
	}
	return true
}

func scanMarkdown(lines []srcLine) (*document, error) {
	doc := &document{sectionLine: map[string]int{}}
	section := ""
	for i := 0; i < len(lines); i++ {
		ln := lines[i]
		if marker, info, ok := openingFence(ln.text); ok {
			b := fencedBlock{open: ln.num, section: section}
			if f := strings.Fields(info); len(f) > 0 {
				b.info = strings.ToLower(f[0])
			}
			closed := false
			for i++; i < len(lines); i++ {
				if closesFence(lines[i].text, marker) {
					closed = true
					break
				}
				b.body = append(b.body, lines[i])
			}
			if !closed {
				return nil, errorf(ln.num, "code block is never closed")
			}
			doc.blocks = append(doc.blocks, b)
			continue
		}
		if m := headingRE.FindStringSubmatch(ln.text); m != nil {
			level := len(m[1])
			title := strings.TrimSpace(strings.TrimRight(m[2], "#"))
			switch {
			case level == 1:
				section = ""
			case level == 2:
				section = strings.ToLower(title)
				if section == encryptionSection || section == migrationsSection {
					if prev, dup := doc.sectionLine[section]; dup {
						return nil, errorf(ln.num, "second %q section; the first is at line %d", title, prev)
					}
					doc.sectionLine[section] = ln.num
				}
			}
			continue
		}
		if section == encryptionSection && isBullet(ln.text) {
			doc.bullets = append(doc.bullets, ln)
		}
	}
	return doc, nil
}

func isBullet(text string) bool {
	t := strings.TrimLeft(text, " \t")
	return len(t) >= 2 && strings.ContainsRune("-*+", rune(t[0])) && (t[1] == ' ' || t[1] == '\t')
}

// codeSpans returns the contents of the inline code spans in text.
func codeSpans(text string) ([]string, bool) {
	var spans []string
	for i := 0; i < len(text); {
		if text[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(text) && text[i+n] == '`' {
			n++
		}
		start := i + n
		end := -1
		for j := start; j < len(text); {
			if text[j] != '`' {
				j++
				continue
			}
			m := 0
			for j+m < len(text) && text[j+m] == '`' {
				m++
			}
			if m == n {
				end = j
				break
			}
			j += m
		}
		if end < 0 {
			return nil, false
		}
		spans = append(spans, strings.TrimSpace(text[start:end]))
		i = end + n
	}
	return spans, true
}

func parseEncryption(s *Schema, doc *document) ([]ColumnRef, error) {
	if _, ok := doc.sectionLine[encryptionSection]; !ok {
		return nil, nil
	}
	var refs []ColumnRef
	seen := map[ColumnRef]int{}
	for _, ln := range doc.bullets {
		spans, ok := codeSpans(ln.text)
		if !ok {
			return nil, errorf(ln.num, "unclosed code span in encryption list")
		}
		if len(spans) == 0 {
			return nil, errorf(ln.num, "encryption list item names no `table.column`")
		}
		for _, sp := range spans {
			m := columnRefRE.FindStringSubmatch(sp)
			if m == nil {
				return nil, errorf(ln.num, "encryption list item %q is not of the form table.column", sp)
			}
			ref := ColumnRef{Table: m[1], Column: m[2]}
			if prev, dup := seen[ref]; dup {
				return nil, errorf(ln.num, "%s.%s is already listed as encrypted at line %d", ref.Table, ref.Column, prev)
			}
			seen[ref] = ln.num
			t, ok := s.Table(ref.Table)
			if !ok {
				return nil, errorf(ln.num, "encrypted column %s.%s: no such table", ref.Table, ref.Column)
			}
			if _, ok := t.Column(ref.Column); !ok {
				return nil, errorf(ln.num, "encrypted column %s.%s: no such column", ref.Table, ref.Column)
			}
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return nil, errorf(doc.sectionLine[encryptionSection], "encryption section lists no columns")
	}
	return refs, nil
}

func parseMigrations(doc *document) ([]string, error) {
	head, ok := doc.sectionLine[migrationsSection]
	if !ok {
		return nil, nil
	}
	for _, b := range doc.blocks {
		if b.section != migrationsSection {
			continue
		}
		var names []string
		seen := map[string]int{}
		for _, ln := range b.body {
			name := strings.TrimSpace(ln.text)
			if name == "" {
				continue
			}
			if !migrationRE.MatchString(name) {
				return nil, errorf(ln.num, "migration name %q is not of the form NNN_name", name)
			}
			if prev, dup := seen[name]; dup {
				return nil, errorf(ln.num, "migration %q already listed at line %d", name, prev)
			}
			seen[name] = ln.num
			names = append(names, name)
		}
		if len(names) == 0 {
			return nil, errorf(b.open, "migrations order block is empty")
		}
		return names, nil
	}
	return nil, errorf(head, "migrations order section has no code block")
}

// checkForeignKeys runs once every table is known, because the seed refers
// to tables it declares further down.
func checkForeignKeys(s *Schema, fkLines map[string][]int) error {
	for _, t := range s.Tables {
		for i, fk := range t.ForeignKeys {
			line := fkLines[t.Name][i]
			ref, ok := s.Table(fk.RefTable)
			if !ok {
				return errorf(line, "table %s: foreign key on %s references unknown table %q", t.Name, fk.Column, fk.RefTable)
			}
			if _, ok := ref.Column(fk.RefColumn); !ok {
				return errorf(line, "table %s: foreign key on %s references unknown column %s.%s", t.Name, fk.Column, fk.RefTable, fk.RefColumn)
			}
		}
	}
	return nil
}
