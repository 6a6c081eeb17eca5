package store_test

// Small, literal-aware helpers for reading SQL text out of the catalogs: CHECK
// clauses from SQLite's stored CREATE TABLE, PostgreSQL's deparsed constraints
// and defaults. Not a SQL parser; each helper understands only what the drift
// test needs, and reports "not recognised" rather than guessing.

import (
	"regexp"
	"strings"
)

// schemaSQLScan walks s, calling lit for each single-quoted literal (quotes
// included) and code for each stretch of anything else. Double-quoted
// identifiers are passed to code whole; comments are dropped.
func schemaSQLScan(s string, code func(string), lit func(string)) {
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			code(b.String())
			b.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch {
		case s[i] == '\'':
			j := i + 1
			for j < len(s) {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			end := min(j+1, len(s))
			flush()
			lit(s[i:end])
			i = end
		case s[i] == '"':
			j := strings.IndexByte(s[i+1:], '"')
			end := len(s)
			if j >= 0 {
				end = i + 1 + j + 1
			}
			b.WriteString(s[i:end])
			i = end
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				j = len(s) - i
			}
			b.WriteByte(' ')
			i += j
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			end := len(s)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteByte(' ')
			i = end
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	flush()
}

// schemaMapCode applies f to everything outside string literals.
func schemaMapCode(s string, f func(string) string) string {
	var b strings.Builder
	schemaSQLScan(s, func(c string) { b.WriteString(f(c)) }, func(l string) { b.WriteString(l) })
	return b.String()
}

// schemaMatchingParen returns the index of the ')' closing the '(' at s[open], or
// -1, skipping literals and quoted identifiers.
func schemaMatchingParen(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '\'', '"':
			q := s[i]
			for i++; i < len(s) && s[i] != q; i++ {
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// schemaUnwrapParens trims s and removes parentheses that enclose all of it.
func schemaUnwrapParens(s string) string {
	s = strings.TrimSpace(s)
	for strings.HasPrefix(s, "(") && schemaMatchingParen(s, 0) == len(s)-1 {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

var checkKeywordRE = regexp.MustCompile(`(?i)\bCHECK\s*$`)

// sqlCheckExprs returns the expression of every CHECK (...) clause in a
// CREATE TABLE statement, unwrapped and with comments removed.
func sqlCheckExprs(createSQL string) []string {
	// Replace literals by same-length placeholders for finding keywords, but
	// cut the expressions from the comment-free original.
	var clean, masked strings.Builder
	schemaSQLScan(createSQL,
		func(c string) { clean.WriteString(c); masked.WriteString(c) },
		func(l string) { clean.WriteString(l); masked.WriteString(strings.Repeat("_", len(l))) })
	text, mask := clean.String(), masked.String()
	var out []string
	for i := 0; i < len(mask); i++ {
		if mask[i] != '(' || !checkKeywordRE.MatchString(mask[:i]) {
			continue
		}
		j := schemaMatchingParen(mask, i)
		if j < 0 {
			break
		}
		out = append(out, schemaUnwrapParens(text[i+1:j]))
		i = j
	}
	return out
}

// pgCastRE matches a PostgreSQL "::type" cast as pg_get_constraintdef and
// column_default print them.
var pgCastRE = regexp.MustCompile(`::\s*(?:character varying|double precision|timestamp with(?:out)? time zone|time with(?:out)? time zone|[A-Za-z_][A-Za-z0-9_]*)(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])?`)

// schemaStripCasts removes PostgreSQL casts outside string literals.
func schemaStripCasts(s string) string {
	return schemaMapCode(s, func(c string) string { return pgCastRE.ReplaceAllString(c, "") })
}

// schemaNormalizeExpr strips casts and redundant parentheses: "('UTC'::character
// varying)" is "'UTC'".
func schemaNormalizeExpr(s string) string {
	return schemaUnwrapParens(schemaStripCasts(schemaUnwrapParens(s)))
}

// schemaUnquote returns the value of s if s is exactly one string literal.
func schemaUnquote(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return "", false
	}
	inner := s[1 : len(s)-1]
	if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
		return "", false
	}
	return strings.ReplaceAll(inner, "''", "'"), true
}

// schemaLiteralList parses "'a', 'b', 'c'" (and nothing else) into its values.
func schemaLiteralList(s string) ([]string, bool) {
	var vals []string
	ok := true
	expectValue := true
	schemaSQLScan(s,
		func(c string) {
			for _, r := range c {
				switch {
				case r == ' ' || r == '\t' || r == '\n' || r == '\r':
				case r == ',' && !expectValue:
					expectValue = true
				default:
					ok = false
				}
			}
		},
		func(l string) {
			v, good := schemaUnquote(l)
			if !good || !expectValue {
				ok = false
			}
			vals = append(vals, v)
			expectValue = false
		})
	if !ok || expectValue || len(vals) == 0 {
		return nil, false
	}
	return vals, true
}

var (
	identParenRE = regexp.MustCompile(`\(\s*("?[A-Za-z_][A-Za-z0-9_]*"?)\s*\)`)
	// SQLite keeps the CHECK as written: col IN ('a', 'b').
	checkInRE = regexp.MustCompile(`(?is)^"?([A-Za-z_][A-Za-z0-9_]*)"?\s+IN\s*\((.*)\)$`)
	// PostgreSQL deparses col IN (...) as col = ANY (ARRAY[...]).
	checkAnyRE = regexp.MustCompile(`(?is)^"?([A-Za-z_][A-Za-z0-9_]*)"?\s*=\s*ANY\s*\(+\s*ARRAY\s*\[(.*)\]\s*\)+$`)
	// ... and a one-value list as col = 'a'.
	checkEqRE = regexp.MustCompile(`(?is)^"?([A-Za-z_][A-Za-z0-9_]*)"?\s*=\s*('.*')$`)
)

// enumCheck recognises a CHECK expression that restricts one column to a list
// of string values, in either dialect's spelling, and returns the column and
// the values.
func enumCheck(expr string) (column string, values []string, ok bool) {
	e := schemaStripCasts(expr)
	e = schemaMapCode(e, func(c string) string { return identParenRE.ReplaceAllString(c, "$1") })
	e = schemaUnwrapParens(e)
	for _, re := range []*regexp.Regexp{checkInRE, checkAnyRE, checkEqRE} {
		if m := re.FindStringSubmatch(e); m != nil {
			if vals, ok := schemaLiteralList(m[2]); ok {
				return m[1], vals, true
			}
		}
	}
	return "", nil, false
}

// jsonValidCheck reports whether a CHECK expression calls json_valid(column).
func jsonValidCheck(expr, column string) bool {
	re := regexp.MustCompile(`(?i)\bjson_valid\s*\(\s*"?` + regexp.QuoteMeta(column) + `"?\s*\)`)
	return re.MatchString(schemaMaskLiterals(expr))
}

// schemaMaskLiterals replaces every string literal by ” and drops comments, so that
// text inside literals cannot be mistaken for code.
func schemaMaskLiterals(s string) string {
	var b strings.Builder
	schemaSQLScan(s, func(c string) { b.WriteString(c) }, func(string) { b.WriteString("''") })
	return b.String()
}
