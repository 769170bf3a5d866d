package accesslog

import (
	"fmt"
	"net/textproto"
	"strings"
)

// Presets accepted by Parse in place of a format.
const (
	// Common is Apache's Common Log Format.
	Common = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s`
	// Combined is Apache's combined format, gunicorn's default.
	Combined = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`
)

// kind is what one piece of a compiled format renders.
type kind uint8

const (
	kLiteral     kind = iota
	kRemoteAddr       // h
	kIdent            // l
	kUser             // u
	kTime             // t
	kRequestLine      // r
	kMethod           // m
	kPath             // U
	kQuery            // q
	kProto            // H
	kStatus           // s
	kBytesRaw         // B
	kBytesCLF         // b
	kReferer          // f
	kUserAgent        // a
	kSeconds          // T
	kMillis           // M
	kMicros           // D
	kDecimalSecs      // L
	kPid              // p
	kReqHeader        // {name}i
	kRespHeader       // {name}o
	kEnv              // {name}e
)

// atoms maps gunicorn's one-letter atoms to what they render.
var atoms = map[byte]kind{
	'h': kRemoteAddr, 'l': kIdent, 'u': kUser, 't': kTime, 'r': kRequestLine,
	'm': kMethod, 'U': kPath, 'q': kQuery, 'H': kProto, 's': kStatus,
	'B': kBytesRaw, 'b': kBytesCLF, 'f': kReferer, 'a': kUserAgent,
	'T': kSeconds, 'M': kMillis, 'D': kMicros, 'L': kDecimalSecs, 'p': kPid,
}

// knownAtoms is the list printed with an unknown atom.
const knownAtoms = "h l u t r m U q H s B b f a T M D L p {NAME}i {NAME}o {NAME}e"

// piece is one element of a compiled format: a literal or an atom.
type piece struct {
	kind kind
	// text is the literal (kLiteral); the canonical header key
	// (kReqHeader, kRespHeader); the lower-cased variable name (kEnv).
	text string
	// name is the name as written in {name} (JSON field names).
	name string
}

// Format is a compiled access_log_format. It is immutable and safe for
// concurrent use.
type Format struct {
	src    string
	pieces []piece
	json   bool
}

// String returns the format as given to Parse (a preset's name for a
// preset).
func (f *Format) String() string { return f.src }

// JSON reports whether the format is the "json" preset.
func (f *Format) JSON() bool { return f.json }

// SyntaxError is a malformed access_log_format.
type SyntaxError struct {
	// Format is the text given to Parse.
	Format string
	// Offset is the byte offset in Format where the problem starts.
	Offset int
	// Msg says what is wrong.
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s (at byte %d of %q)", e.Msg, e.Offset, e.Format)
}

// Parse compiles an access_log_format: Python's %(name)s syntax with
// gunicorn's atoms, %% for a literal %, or one of the presets "common",
// "combined" and "json" (JSON objects, see Options.JSON). An empty format
// is "combined". The only conversion is s (%(h)s); every other problem —
// an unknown atom, an unclosed %(, a lone % — is a *SyntaxError.
func Parse(format string) (*Format, error) {
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "combined":
		f, err := parse(Combined)
		if err == nil {
			f.src = "combined"
		}
		return f, err
	case "common":
		f, err := parse(Common)
		if err == nil {
			f.src = "common"
		}
		return f, err
	case "json":
		return &Format{src: "json", json: true}, nil
	}
	return parse(format)
}

func parse(s string) (*Format, error) {
	f := &Format{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			f.pieces = append(f.pieces, piece{kind: kLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	fail := func(at int, format string, args ...any) (*Format, error) {
		return nil, &SyntaxError{Format: s, Offset: at, Msg: fmt.Sprintf(format, args...)}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 == len(s) {
			return fail(i, "a lone %% at the end (write %%%% for a literal %%)")
		}
		switch s[i+1] {
		case '%':
			lit.WriteByte('%')
			i += 2
			continue
		case '(':
		default:
			return fail(i, "%%%c is not an atom: write %%(NAME)s, or %%%% for a literal %%", s[i+1])
		}
		// %(name)s: Python matches parentheses, so count them.
		depth, j := 1, i+2
		for ; j < len(s) && depth > 0; j++ {
			switch s[j] {
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		if depth > 0 {
			return fail(i, "unclosed %%( (want %%(NAME)s)")
		}
		name := s[i+2 : j-1] // j is past the closing parenthesis
		if j == len(s) {
			return fail(i, "%%(%s) has no conversion (want %%(%s)s)", name, name)
		}
		if s[j] != 's' {
			return fail(j, "%%(%s)%c: only the s conversion is supported (want %%(%s)s)", name, s[j], name)
		}
		p, err := atom(name)
		if err != "" {
			return fail(i, "%s", err)
		}
		flush()
		f.pieces = append(f.pieces, p)
		i = j + 1
	}
	flush()
	return f, nil
}

// atom resolves the name of %(name)s; the error is "" when it is known.
func atom(name string) (piece, string) {
	if len(name) == 1 {
		if k, ok := atoms[name[0]]; ok {
			return piece{kind: k, name: name}, ""
		}
	}
	if strings.HasPrefix(name, "{") {
		end := strings.IndexByte(name, '}')
		if end < 0 || end != len(name)-2 {
			return piece{}, fmt.Sprintf("malformed atom %%(%s)s (want %%({NAME}i)s, %%({NAME}o)s or %%({NAME}e)s)", name)
		}
		inner := strings.TrimSpace(name[1:end])
		if inner == "" {
			return piece{}, fmt.Sprintf("atom %%(%s)s has an empty name", name)
		}
		switch name[end+1] {
		case 'i':
			return piece{kind: kReqHeader, text: textproto.CanonicalMIMEHeaderKey(inner), name: strings.ToLower(inner)}, ""
		case 'o':
			return piece{kind: kRespHeader, text: textproto.CanonicalMIMEHeaderKey(inner), name: strings.ToLower(inner)}, ""
		case 'e':
			// gunicorn lower-cases environ keys: %({REMOTE_PORT}e)s
			// and %({remote_port}e)s are the same.
			return piece{kind: kEnv, text: strings.ToLower(inner), name: strings.ToLower(inner)}, ""
		}
		return piece{}, fmt.Sprintf("unknown atom %%(%s)s: {NAME} is followed by i (request header), o (response header) or e (environment)", name)
	}
	return piece{}, fmt.Sprintf("unknown atom %%(%s)s (known: %s)", name, knownAtoms)
}
