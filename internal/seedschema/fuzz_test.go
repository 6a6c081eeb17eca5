package seedschema

import (
	"os"
	"slices"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is
// internally consistent, since drift tests will trust every reference in it.
//
//	go test -fuzz=FuzzParse ./internal/seedschema/
func FuzzParse(f *testing.F) {
	if seed, err := os.ReadFile(seedPath); err == nil {
		f.Add(seed)
	}
	f.Add([]byte(nil))
	f.Add(table("  id INT PRIMARY KEY"))
	f.Add(table("  id INT,\n  FOREIGN KEY (id) REFERENCES t(id) ON DELETE SET NULL,\n  INDEX i (id DESC)"))
	f.Add(table("  e ENUM('a', 'b''c') DEFAULT 'a', -- x"))
	f.Add(md("§§§sql\nCREATE TABLE t (\n id INT,\n§§§\n"))
	f.Add(md("§§§sql\nCREATE TABLE t (\n  id INT\n);\n§§§\n## Encryption\n- §t.id§\n## Migrations Order\n§§§\n001_a\n§§§\n"))

	f.Fuzz(func(t *testing.T, doc []byte) {
		orig := slices.Clone(doc)
		s, err := Parse(doc)
		if !slices.Equal(doc, orig) {
			t.Fatal("Parse modified its input")
		}
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned a schema alongside error %v", err)
			}
			return
		}
		if s == nil || len(s.Tables) == 0 {
			t.Fatalf("Parse succeeded with no tables: %+v", s)
		}
		for i := range s.Tables {
			tbl := &s.Tables[i]
			if got, ok := s.Table(tbl.Name); !ok || got != tbl {
				t.Fatalf("Table(%q) does not find table %d", tbl.Name, i)
			}
			if len(tbl.Columns) == 0 {
				t.Fatalf("table %s has no columns", tbl.Name)
			}
			for _, c := range tbl.Columns {
				if c.PrimaryKey && c.Nullable {
					t.Fatalf("%s.%s is a nullable primary key", tbl.Name, c.Name)
				}
				if (c.Type == "ENUM") != (len(c.EnumValues) > 0) {
					t.Fatalf("%s.%s: type %s with enum values %q", tbl.Name, c.Name, c.Type, c.EnumValues)
				}
			}
			for _, fk := range tbl.ForeignKeys {
				if _, ok := tbl.Column(fk.Column); !ok {
					t.Fatalf("%s: foreign key on missing column %s", tbl.Name, fk.Column)
				}
				ref, ok := s.Table(fk.RefTable)
				if !ok {
					t.Fatalf("%s: foreign key to missing table %s", tbl.Name, fk.RefTable)
				}
				if _, ok := ref.Column(fk.RefColumn); !ok {
					t.Fatalf("%s: foreign key to missing column %s.%s", tbl.Name, fk.RefTable, fk.RefColumn)
				}
			}
			for _, idx := range tbl.Indexes {
				if len(idx.Columns) == 0 {
					t.Fatalf("%s: index %q has no columns", tbl.Name, idx.Name)
				}
				for _, ic := range idx.Columns {
					if _, ok := tbl.Column(ic.Name); !ok {
						t.Fatalf("%s: index %q on missing column %s", tbl.Name, idx.Name, ic.Name)
					}
				}
			}
		}
		for _, ref := range s.EncryptedColumns {
			tbl, ok := s.Table(ref.Table)
			if !ok {
				t.Fatalf("encrypted column in missing table %s", ref.Table)
			}
			if _, ok := tbl.Column(ref.Column); !ok {
				t.Fatalf("encrypted column %s.%s is missing", ref.Table, ref.Column)
			}
		}
	})
}
