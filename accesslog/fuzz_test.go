package accesslog

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; it either compiles (and the format then
// renders a line without panicking, in text and JSON) or returns a
// *SyntaxError pointing into the format. A format without % renders as
// itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{Combined, Common, "json", "", "%%", "%(h)s", "%({x-forwarded-for}i)s", "%({REMOTE_PORT}e)s",
		"%((h))s", "%(h", "100%", "%({}i)s", "%(h)d", `"%(r)s" %(L)s %(p)s`, "%({a}o)s%({b}e)s%(T)s%(M)s%(D)s"} {
		f.Add(s)
	}
	e := knownEntry()
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q): %T %v, want *SyntaxError", s, err, err)
			}
			if se.Offset < 0 || se.Offset > len(s) || se.Format != s {
				t.Fatalf("Parse(%q): offset %d out of range", s, se.Offset)
			}
			return
		}
		line := New(Options{Format: fm, PID: 1}).Append(nil, e)
		if len(line) == 0 || line[len(line)-1] != '\n' {
			t.Fatalf("Parse(%q): line %q without newline", s, line)
		}
		if !strings.Contains(s, "%") && !fm.JSON() {
			if trimmed := strings.TrimSpace(strings.ToLower(s)); trimmed != "" && trimmed != "combined" && trimmed != "common" {
				if string(line) != s+"\n" {
					t.Fatalf("literal %q rendered %q", s, line)
				}
			}
		}
		js := New(Options{Format: fm, PID: 1, JSON: true}).Append(nil, e)
		if !json.Valid(js) {
			t.Fatalf("Parse(%q): invalid JSON line %q", s, js)
		}
	})
}
