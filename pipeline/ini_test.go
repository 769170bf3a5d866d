package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	type opt struct {
		sect, key, val string
		line           int
	}
	tests := []struct {
		name string
		in   string
		want []opt
	}{
		{"delimiters", "[app:a]\nk1 = v\nk2: v2\nk3=v3=x\nhttp://h/ = x\n", []opt{
			{"app:a", "k1", "v", 2}, {"app:a", "k2", "v2", 3}, {"app:a", "k3", "v3=x", 4}, {"app:a", "http", "//h/ = x", 5}}},
		{"case preserved", "[s]\nKey = 1\nkey = 2\n", []opt{{"s", "Key", "1", 2}, {"s", "key", "2", 3}}},
		{"inline semicolon kept", "[s]\nk = v ; not a comment\n", []opt{{"s", "k", "v ; not a comment", 2}}},
		{"comments anywhere", "# c\n; c\n[s]\n  # indented comment\nk = a\n  # dropped inside value\n  b\n", []opt{{"s", "k", "a\nb", 5}}},
		{"multiline with blanks", "[s]\nk = a\n  b\n\n  c\n\n\nn = 1\n", []opt{{"s", "k", "a\nb\n\nc", 2}, {"s", "n", "1", 8}}},
		{"indented header swallowed", "[s]\nk = a\n  [t]\n", []opt{{"s", "k", "a\n[t]", 2}}},
		{"header trailing text", "[app:main] ; note\nk = v\n", []opt{{"app:main", "k", "v", 2}}},
		{"crlf", "[s]\r\nk = v\r\n  w\r\n", []opt{{"s", "k", "v\nw", 2}}},
		{"default merges", "[DEFAULT]\na = 1\n[s]\n[DEFAULT]\nb = 2\n", []opt{{"DEFAULT", "a", "1", 2}, {"DEFAULT", "b", "2", 5}}},
		{"empty value", "[s]\nk =\n", []opt{{"s", "k", "", 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("t.ini", []byte(tc.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				s := f.Defaults
				if w.sect != "DEFAULT" {
					s = f.Section(w.sect)
				}
				o := s.Get(w.key)
				if o == nil {
					t.Fatalf("[%s] %s missing", w.sect, w.key)
				}
				if o.Value != w.val || o.Pos.Line != w.line {
					t.Errorf("[%s] %s = %q at line %d, want %q at line %d", w.sect, w.key, o.Value, o.Pos.Line, w.val, w.line)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, class string
		lines           []int
	}{
		{"no header", "# c\nk = v\n", "MissingSectionHeaderError", []int{2}},
		{"duplicate section", "[a]\n[b]\n[a]\n", "DuplicateSectionError", []int{3}},
		{"duplicate option", "[a]\nk = 1\nk: 2\n", "DuplicateOptionError", []int{3}},
		{"duplicate default across blocks", "[DEFAULT]\nk = 1\n[DEFAULT]\nk = 2\n", "DuplicateOptionError", []int{4}},
		{"bad lines all reported", "[a]\njunk\nk = v\nmore junk\n", "ParsingError", []int{2, 4}},
		{"empty key", "[a]\n= v\n", "ParsingError", []int{2}},
		{"empty brackets", "[a]\n[]\n", "ParsingError", []int{2}},
		{"empty brackets first", "[]\n", "MissingSectionHeaderError", []int{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.ini", []byte(tc.in), nil)
			if err == nil {
				t.Fatal("no error")
			}
			var list ErrorList
			var one *Error
			var got []*Error
			switch {
			case errors.As(err, &list):
				got = list
			case errors.As(err, &one):
				got = []*Error{one}
			default:
				t.Fatalf("error %T %v", err, err)
			}
			if len(got) != len(tc.lines) {
				t.Fatalf("got %d errors, want %d: %v", len(got), len(tc.lines), err)
			}
			for i, e := range got {
				if e.Class != tc.class || e.Pos.Line != tc.lines[i] || e.Pos.File != "t.ini" {
					t.Errorf("error %d: %s %v, want %s at t.ini:%d", i, e.Class, e.Pos, tc.class, tc.lines[i])
				}
				if !strings.HasPrefix(e.Error(), "t.ini:") {
					t.Errorf("message %q does not start with file:line", e.Error())
				}
			}
		})
	}
}

func TestParseHugeInputIsBounded(t *testing.T) {
	huge := "[s]\nk = " + strings.Repeat("x", maxFileBytes) + "\n"
	start := time.Now()
	_, err := Parse("t.ini", []byte(huge), nil)
	if err == nil {
		t.Fatal("a file over the size limit parsed")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("rejecting a huge file took %v", d)
	}
	// A long but allowed line parses in linear time.
	long := "[s]\nk = " + strings.Repeat("%(a)s", 200000) + "\n"
	if _, err := Parse("t.ini", []byte(long), nil); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse checks that no input panics, and that what parses survives a
// Format/Parse round trip.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/conformance/*/*/*.ini")
	more, _ := filepath.Glob("testdata/*.ini")
	for _, p := range append(seeds, more...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("[s]\nk = %(x)s\n\t%%\n;c\n#c\n\n[DEFAULT]\nx=1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.ini", data, nil)
		if err != nil {
			var list ErrorList
			var one *Error
			if !errors.As(err, &list) && !errors.As(err, &one) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), "f.ini") {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		again, err := Parse("f.ini", file.Format(), nil)
		if err != nil {
			t.Fatalf("formatted output does not parse: %v\n%s", err, file.Format())
		}
		if len(again.Sections) != len(file.Sections) {
			t.Fatalf("round trip: %d sections, want %d", len(again.Sections), len(file.Sections))
		}
		all := append([]*Section{file.Defaults}, file.Sections...)
		for _, s := range all {
			s2 := again.Defaults
			if s != file.Defaults {
				s2 = again.Section(s.Name)
			}
			if s2 == nil || len(s2.Options) != len(s.Options) {
				t.Fatalf("round trip lost options of [%s]\n%s", s.Name, file.Format())
			}
			for i, o := range s.Options {
				if s2.Options[i].Key != o.Key || s2.Options[i].Value != o.Value {
					t.Fatalf("round trip: [%s] %q=%q became %q=%q", s.Name, o.Key, o.Value, s2.Options[i].Key, s2.Options[i].Value)
				}
			}
		}
	})
}
