package pipeline

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// File is a parsed paste INI file: the Python ConfigParser dialect that
// PasteDeploy uses (strict, "=" and ":" delimiters, full-line "#"/";"
// comments, case-preserving option names, multi-line values, a [DEFAULT]
// section), with the position of every section and option.
type File struct {
	// Path is the file name as given to Parse (PasteDeploy's "filename").
	Path string
	// Defaults holds [DEFAULT], starting with the built-in "here" and
	// "__file__" when the caller supplies them.
	Defaults *Section
	// Sections are the other sections in file order.
	Sections []*Section

	byName map[string]*Section
}

// Section is one [name] block.
type Section struct {
	Name    string
	Pos     Pos
	Options []*Option

	byKey map[string]*Option
}

// Option is one key = value pair; Value has continuation lines joined with
// "\n" and no interpolation applied.
type Option struct {
	Key   string
	Value string
	Pos   Pos

	lines []string // while parsing: the value's lines
}

// Section returns the named section (not DEFAULT), or nil.
func (f *File) Section(name string) *Section { return f.byName[name] }

// Get returns the option with key, or nil.
func (s *Section) Get(key string) *Option {
	if s == nil {
		return nil
	}
	return s.byKey[key]
}

func (s *Section) set(o *Option) {
	if old, ok := s.byKey[o.Key]; ok {
		// Python dict assignment keeps the key's place.
		old.Value, old.Pos, old.lines = o.Value, o.Pos, o.lines
		return
	}
	s.Options = append(s.Options, o)
	s.byKey[o.Key] = o
}

func newSection(name string, pos Pos) *Section {
	return &Section{Name: name, Pos: pos, byKey: make(map[string]*Option)}
}

// maxLineBytes bounds a single line so hostile input cannot make the parser
// hold on to arbitrarily large values; real configs stay far below.
const maxFileBytes = 16 << 20

// Parse reads an INI file the way PasteDeploy's ConfigParser does. defaults
// seeds [DEFAULT] (PasteDeploy passes "here" and "__file__"); path is used
// in positions and messages.
//
// Errors carry the Python exception class: MissingSectionHeaderError,
// DuplicateSectionError and DuplicateOptionError stop at once; lines that
// are neither a header nor an option are collected into one ParsingError
// (an ErrorList, one entry per line) raised after the whole file is read.
func Parse(path string, data []byte, defaults []*Option) (*File, error) {
	if len(data) > maxFileBytes {
		return nil, &Error{Pos: Pos{File: path}, Class: "ParsingError", Msg: fmt.Sprintf("file is larger than %d bytes", maxFileBytes)}
	}
	f := &File{Path: path, Defaults: newSection("DEFAULT", Pos{File: path}), byName: make(map[string]*Section)}
	for _, d := range defaults {
		f.Defaults.set(&Option{Key: d.Key, Value: d.Value, Pos: d.Pos})
	}
	text := decodeText(data)

	type elemKey struct{ sect, opt string }
	added := make(map[elemKey]bool)
	var (
		cur         *Section
		sectName    string
		opt         *Option // the option being read (nil after a header)
		indentLevel int
		bad         ErrorList
	)
	lineno := 0
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i+1], text[i+1:]
		} else {
			line, text = text, ""
		}
		lineno++
		pos := Pos{File: path, Line: lineno}
		stripped := pyStrip(line)
		isComment := strings.HasPrefix(stripped, "#") || strings.HasPrefix(stripped, ";")
		value := stripped
		if isComment {
			value = ""
		}
		if value == "" {
			// empty_lines_in_values: a blank (not comment) line inside a value
			// is kept; comment lines are dropped and end nothing.
			if !isComment && cur != nil && opt != nil && opt.Key != "" {
				opt.lines = append(opt.lines, "")
			}
			continue
		}
		curIndent := leadingSpace(line)
		if cur != nil && opt != nil && opt.Key != "" && curIndent > indentLevel {
			opt.lines = append(opt.lines, value)
			continue
		}
		indentLevel = curIndent
		if name, ok := sectionHeader(value); ok {
			sectName = name
			switch {
			case f.byName[name] != nil:
				return nil, &Error{Pos: pos, Section: name, Class: "DuplicateSectionError",
					Msg: fmt.Sprintf("While reading from %s [line %2d]: section %s already exists", pyRepr(path), lineno, pyRepr(name))}
			case name == "DEFAULT":
				cur = f.Defaults
			default:
				cur = newSection(name, pos)
				f.Sections = append(f.Sections, cur)
				f.byName[name] = cur
			}
			opt = nil
			continue
		}
		if cur == nil {
			return nil, &Error{Pos: pos, Class: "MissingSectionHeaderError",
				Msg: fmt.Sprintf("File contains no section headers.\nfile: %s, line: %d\n%s", pyRepr(path), lineno, pyRepr(line))}
		}
		key, val, ok := splitOption(value)
		if !ok {
			bad = append(bad, &Error{Pos: pos, Section: sectName, Class: "ParsingError",
				Msg: fmt.Sprintf("not a section header or key = value line: %s", pyRepr(strings.TrimRight(line, "\n")))})
			continue
		}
		if key == "" {
			bad = append(bad, &Error{Pos: pos, Section: sectName, Class: "ParsingError",
				Msg: fmt.Sprintf("empty option name: %s", pyRepr(strings.TrimRight(line, "\n")))})
		}
		if added[elemKey{sectName, key}] {
			return nil, &Error{Pos: pos, Section: sectName, Class: "DuplicateOptionError",
				Msg: fmt.Sprintf("While reading from %s [line %2d]: option %s in section %s already exists", pyRepr(path), lineno, pyRepr(key), pyRepr(sectName))}
		}
		added[elemKey{sectName, key}] = true
		opt = &Option{Key: key, Pos: pos, lines: []string{val}}
		cur.set(opt)
	}
	join := func(s *Section) {
		for _, o := range s.Options {
			if o.lines != nil {
				o.Value = pyRStrip(strings.Join(o.lines, "\n"))
				o.lines = nil
			}
		}
	}
	join(f.Defaults)
	for _, s := range f.Sections {
		join(s)
	}
	if len(bad) > 0 {
		return nil, bad
	}
	return f, nil
}

// decodeText turns bytes into text the way Python's open() in text mode
// with universal newlines does: "\r\n" and "\r" become "\n". A UTF-8 BOM is
// kept (Python's utf-8 codec keeps it too); invalid UTF-8 is replaced.
func decodeText(data []byte) string {
	if !utf8.Valid(data) {
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	}
	s := string(data)
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return s
}

// sectionHeader matches ConfigParser's SECTCRE "\[(?P<header>.+)\]" at the
// start of the stripped line: the header runs to the last "]".
func sectionHeader(v string) (string, bool) {
	if len(v) < 3 || v[0] != '[' {
		return "", false
	}
	end := strings.LastIndexByte(v, ']')
	if end < 2 {
		return "", false
	}
	return v[1:end], true
}

// splitOption matches ConfigParser's OPTCRE: the key is everything before
// the first "=" or ":" (right-stripped), the value the stripped rest.
func splitOption(v string) (key, value string, ok bool) {
	i := strings.IndexAny(v, "=:")
	if i < 0 {
		return "", "", false
	}
	return pyRStrip(v[:i]), pyStrip(v[i+1:]), true
}

// pyIsSpace is Python's str.isspace for one rune.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

func pyStrip(s string) string  { return strings.TrimFunc(s, pyIsSpace) }
func pyRStrip(s string) string { return strings.TrimRightFunc(s, pyIsSpace) }

// leadingSpace counts the runes before the first non-space one, like
// ConfigParser's NONSPACECRE.search(line).start().
func leadingSpace(line string) int {
	n := 0
	for _, r := range line {
		if !pyIsSpace(r) {
			return n
		}
		n++
	}
	return 0
}

// pyRepr quotes s the way Python's repr does for common strings, so
// messages read like PasteDeploy's.
func pyRepr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// Format writes f back as INI text that Parse reads to the same sections
// and values: [DEFAULT] first (without the built-in here and __file__),
// continuation lines indented.
func (f *File) Format(skipDefaults ...string) []byte {
	var b bytes.Buffer
	skip := map[string]bool{}
	for _, k := range skipDefaults {
		skip[k] = true
	}
	writeSection := func(s *Section) {
		fmt.Fprintf(&b, "[%s]\n", s.Name)
		for _, o := range s.Options {
			if s == f.Defaults && skip[o.Key] {
				continue
			}
			lines := strings.Split(o.Value, "\n")
			fmt.Fprintf(&b, "%s = %s\n", o.Key, lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(&b, "\t%s\n", l)
			}
		}
		b.WriteByte('\n')
	}
	writeSection(f.Defaults)
	for _, s := range f.Sections {
		writeSection(s)
	}
	return b.Bytes()
}
