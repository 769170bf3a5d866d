package httpguard

import (
	"bytes"
	"math"
)

// The parser's states. The head states follow lines; the body states skip
// what net/http will read as the body, so the next head is found where
// net/http will look for it.
const (
	stHead        uint8 = iota // in a request head (request line, fields)
	stBodyCL                   // remain bytes of a Content-Length body
	stChunkSize                // chunk-size hex digits
	stChunkExt                 // after the digits: BWS, chunk extensions, up to CR
	stChunkSizeLF              // CR of a chunk-size line seen: LF expected
	stChunkData                // remain bytes of chunk data
	stChunkDataCR              // CR expected after chunk data
	stChunkDataLF              // LF expected after chunk data
	stTrailer                  // in the trailer section (lines like fields)
	stPaused                   // after an Upgrade or CONNECT request: see Conn
	stPass                     // not HTTP/1 any more (HTTP/2 preface): bytes pass
	stBad                      // a violation: nothing from here on is delivered
)

// Request-line parts.
const (
	rlMethod uint8 = iota
	rlTarget
	rlVersion
)

// Request-target forms as far as the guard tells them apart.
const (
	formUnknown   uint8 = iota // no byte yet, or still reading a scheme
	formOrigin                 // "/..."
	formAsterisk               // "*"
	formAbsolute               // scheme "://" ...
	formAuthority              // anything else: host:port, or garbage
)

// Scheme scanning of a target that does not start with / or *.
const (
	schemeName   uint8 = iota // ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
	schemeColon               // ":" seen
	schemeSlash1              // ":/" seen
)

// Fields the guard reads the value of, or counts.
const (
	fOther uint8 = iota
	fContentLength
	fTransferEncoding
	fContentType
	fUpgrade
)

// Content-Length value scanning.
const (
	clLeadingOWS uint8 = iota
	clDigits
	clTrailingOWS
)

// Transfer-Encoding list scanning.
const (
	teBetween uint8 = iota // before a coding: OWS and commas
	teToken                // in a coding
	teAfter                // OWS after a coding, before "," (or a parameter)
)

// Chunk extensions (RFC 9112 §7.1.1):
//
//	chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
const (
	exSize       uint8 = iota // right after the size digits
	exBeforeName              // after ";"
	exName
	exAfterName
	exBeforeValue // after "="
	exToken
	exQuoted
	exQuotedEscape
	exAfterValue
)

// nameMax is the longest field name the guard recognises (the forbidden
// trailer names included); longer names are simply not interesting.
const nameMax = 20

// maxChunkDigits matches net/http, which refuses a chunk size of more
// than 16 hex digits (leading zeros included).
const maxChunkDigits = 16

// parser follows the HTTP/1 framing of a request stream, a read at a time,
// without copying: feed reports how many bytes may go on to net/http. Its
// zero value is at the start of a request head.
type parser struct {
	state uint8
	// bad: what was wrong, and whether the head had already gone on (the
	// violation is in a body: net/http is serving that request).
	reason string
	inBody bool
	at     int // the violation's offset in the read being fed

	// The line being read (head and trailer section).
	lineLen   int  // content bytes of the line so far (CR and LF excluded)
	crPending bool // the last byte read was the CR of this line
	lines     int  // complete lines of this head (0: on the request line)

	// Request line.
	rl        uint8
	method    [8]byte
	methodLen int
	form      uint8
	scheme    uint8
	targetLen int
	version   [8]byte
	verLen    int

	// Field line.
	inValue bool
	name    [nameMax]byte
	nameLen int
	field   uint8
	clState uint8
	clVal   int64
	teState uint8
	teMatch int // bytes of the current coding that match "chunked"; -1: no match
	teLen   int // bytes of the current coding
	teBad   bool

	// What the head says.
	http10      bool // HTTP/1.0 or older
	connect     bool
	upgrade     bool
	clSeen      bool
	cl          int64
	teSeen      bool
	chunkedN    int  // "chunked" codings seen
	lastChunked bool // the last coding seen is chunked
	contentType int

	// Body.
	remain     int64 // CL bytes, or chunk data bytes, still to skip
	sizeDigits int
	ext        uint8 // where in the chunk extensions (exSize...)
	sizeBWS    bool  // whitespace right after the chunk size

	// messages counts complete requests (head and body); tests use it to
	// find where the guard thinks each one ends.
	messages int
}

// feed follows b, the next bytes of the stream, and returns how many of
// them may be delivered: all of them, or fewer when the state became
// stBad (the violation is at b[n]) or stPaused (b[n:] belong to whatever
// follows an Upgrade or CONNECT request).
func (p *parser) feed(b []byte) int {
	i := 0
	for i < len(b) {
		switch p.state {
		case stHead, stTrailer:
			var ok bool
			if i, ok = p.line(b, i); !ok {
				return i
			}
		case stBodyCL:
			k := int64(len(b) - i)
			if k > p.remain {
				k = p.remain
			}
			i += int(k)
			p.remain -= k
			if p.remain == 0 {
				p.endMessage()
			}
		case stChunkSize:
			c := b[i]
			v, ok := unhex(c)
			if !ok {
				if p.sizeDigits == 0 {
					return p.fail(i, "invalid chunk size")
				}
				p.state = stChunkExt
				continue // c is the extension's, or the CR
			}
			if p.sizeDigits == maxChunkDigits || p.remain > (math.MaxInt64-int64(v))>>4 {
				return p.fail(i, "chunk size too large")
			}
			p.remain = p.remain<<4 | int64(v)
			p.sizeDigits++
			i++
		case stChunkExt:
			c := b[i]
			switch {
			case c == '\r':
				if reason := p.endExt(); reason != "" {
					return p.fail(i, reason)
				}
				p.state = stChunkSizeLF
			case c == '\n':
				return p.fail(i, "chunk size line ends in a bare LF")
			default:
				if reason := p.extByte(c); reason != "" {
					return p.fail(i, reason)
				}
			}
			i++
		case stChunkSizeLF:
			if b[i] != '\n' {
				return p.fail(i, "bare CR in a chunk size line")
			}
			i++
			p.sizeDigits, p.ext, p.sizeBWS = 0, exSize, false
			if p.remain == 0 {
				p.startTrailer()
			} else {
				p.state = stChunkData
			}
		case stChunkData:
			k := int64(len(b) - i)
			if k > p.remain {
				k = p.remain
			}
			i += int(k)
			p.remain -= k
			if p.remain == 0 {
				p.state = stChunkDataCR
			}
		case stChunkDataCR:
			if b[i] != '\r' {
				return p.fail(i, "chunk data not followed by CRLF")
			}
			i++
			p.state = stChunkDataLF
		case stChunkDataLF:
			if b[i] != '\n' {
				return p.fail(i, "chunk data not followed by CRLF")
			}
			i++
			p.state = stChunkSize
		case stPass:
			return len(b)
		default: // stPaused, stBad
			return i
		}
	}
	return i
}

// fail records a violation at b[i] and returns i: the bytes before it may
// still be delivered, since the head they belong to is not complete
// without the byte at i (or, in a body, net/http already has the head).
func (p *parser) fail(i int, reason string) int {
	p.inBody = p.state != stHead
	p.state = stBad
	p.reason = reason
	p.at = i
	return i
}

// line follows b[i:] up to and including the next LF (or to its end,
// when the line goes on in the next read), and returns where it stopped
// and false on a violation.
func (p *parser) line(b []byte, i int) (int, bool) {
	rest := b[i:]
	lf := bytes.IndexByte(rest, '\n')
	seg := rest
	if lf >= 0 {
		seg = rest[:lf]
	}
	if p.crPending && len(seg) > 0 {
		return p.fail(i, "bare CR (not followed by LF)"), false
	}
	// The content before a CR is read first, so the verdict is the same
	// when a read ends right after the CR.
	cr := bytes.IndexByte(seg, '\r')
	content := seg
	if cr >= 0 {
		content = seg[:cr]
	}
	if len(content) > 0 {
		if !p.content(content, i) {
			return p.at, false
		}
		p.lineLen += len(content)
	}
	crLast := cr >= 0
	if crLast && cr != len(seg)-1 {
		// At the byte after the CR, as when the CR ends a read.
		return p.fail(i+cr+1, "bare CR (not followed by LF)"), false
	}
	if lf < 0 {
		p.crPending = crLast
		return len(b), true
	}
	if !crLast && !p.crPending {
		return p.fail(i+lf, "line ends in a bare LF, not CRLF"), false
	}
	p.crPending = false
	if !p.endLine(i + lf) {
		return p.at, false
	}
	return i + lf + 1, true
}

// content follows seg, bytes of the current line that contain no CR or
// LF; off is seg's offset in the read, for fail.
func (p *parser) content(seg []byte, off int) bool {
	if p.state == stHead && p.lines == 0 {
		p.requestLine(seg)
		return true
	}
	return p.fieldLine(seg, off)
}

func (p *parser) requestLine(seg []byte) {
	for len(seg) > 0 {
		switch p.rl {
		case rlMethod:
			k := bytes.IndexByte(seg, ' ')
			part := seg
			if k >= 0 {
				part = seg[:k]
			}
			if p.methodLen < len(p.method) {
				copy(p.method[p.methodLen:], part)
			}
			p.methodLen += len(part)
			if k < 0 {
				return
			}
			p.rl, seg = rlTarget, seg[k+1:]
		case rlTarget:
			// The form is told by the first bytes; the rest is skipped.
			j := 0
			for p.form == formUnknown && j < len(seg) {
				p.classify(seg[j], p.targetLen+j)
				if seg[j] == ' ' {
					break
				}
				j++
			}
			k := bytes.IndexByte(seg, ' ')
			if k < 0 {
				p.targetLen += len(seg)
				return
			}
			p.targetLen += k
			if p.form == formUnknown {
				p.form = formAuthority // ended while reading a scheme
			}
			p.rl, seg = rlVersion, seg[k+1:]
		default: // rlVersion: the rest of the line, spaces included
			if p.verLen < len(p.version) {
				copy(p.version[p.verLen:], seg)
			}
			p.verLen += len(seg)
			return
		}
	}
}

// classify reads byte c at position pos of the target while its form is
// unknown.
func (p *parser) classify(c byte, pos int) {
	if pos == 0 {
		switch {
		case c == '/':
			p.form = formOrigin
		case c == '*':
			p.form = formAsterisk
		case isAlpha(c):
			p.scheme = schemeName
		default:
			p.form = formAuthority
		}
		return
	}
	switch p.scheme {
	case schemeName:
		switch {
		case c == ':':
			p.scheme = schemeColon
		case isAlpha(c) || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.':
		default:
			p.form = formAuthority
		}
	case schemeColon:
		if c == '/' {
			p.scheme = schemeSlash1
		} else {
			p.form = formAuthority // host:port
		}
	case schemeSlash1:
		if c == '/' {
			p.form = formAbsolute
		} else {
			p.form = formAuthority
		}
	}
}

// fieldLine follows bytes of a header (or trailer) field line.
func (p *parser) fieldLine(seg []byte, off int) bool {
	k := 0
	if !p.inValue {
		if p.lineLen == 0 && (seg[0] == ' ' || seg[0] == '\t') {
			// obs-fold: net/http would join it to the previous field
			// (RFC 9112 §5.2 lets a server reject it).
			p.fail(off, "obsolete line folding (a line starting with whitespace)")
			return false
		}
		for ; k < len(seg); k++ {
			c := seg[k]
			if c == ':' {
				if p.nameLen == 0 {
					p.fail(off+k, "empty field name")
					return false
				}
				if reason := p.startValue(); reason != "" {
					p.fail(off+k, reason)
					return false
				}
				k++
				break
			}
			if !tchar[c] {
				if c == ' ' || c == '\t' {
					p.fail(off+k, "whitespace between a field name and the colon")
				} else {
					p.fail(off+k, "invalid character in a field name")
				}
				return false
			}
			if p.nameLen < nameMax {
				p.name[p.nameLen] = c | 0x20 // tchar letters only: lower case
			}
			p.nameLen++
		}
		if !p.inValue {
			return true
		}
	}
	switch p.field {
	case fContentLength:
		return p.clValue(seg[k:], off+k)
	case fTransferEncoding:
		p.teValue(seg[k:])
	}
	return true
}

// startValue is the colon of a field line: it tells which field this is.
// In the trailer section, a field that must not be a trailer is refused:
// the reason is returned ("" when the field is fine).
func (p *parser) startValue() string {
	p.inValue = true
	p.field = fOther
	if p.nameLen > nameMax {
		return ""
	}
	name := p.name[:p.nameLen]
	if p.state == stTrailer {
		if forbiddenTrailer(name) {
			return "field not allowed in a trailer: " + string(name)
		}
		return ""
	}
	switch string(name) {
	case "content-length":
		p.field, p.clState, p.clVal = fContentLength, clLeadingOWS, 0
	case "transfer-encoding":
		p.field, p.teSeen = fTransferEncoding, true
		p.teState = teBetween
	case "content-type":
		p.field = fContentType
		p.contentType++
	case "upgrade":
		p.field, p.upgrade = fUpgrade, true
	}
	return ""
}

// clValue reads a Content-Length value: OWS 1*DIGIT OWS, nothing else (no
// sign, no list, no inner space).
func (p *parser) clValue(v []byte, off int) bool {
	for j, c := range v {
		switch {
		case c >= '0' && c <= '9':
			if p.clState == clTrailingOWS {
				p.fail(off+j, "invalid Content-Length")
				return false
			}
			p.clState = clDigits
			d := int64(c - '0')
			if p.clVal > (math.MaxInt64-d)/10 {
				p.fail(off+j, "Content-Length too large")
				return false
			}
			p.clVal = p.clVal*10 + d
		case c == ' ' || c == '\t':
			if p.clState == clDigits {
				p.clState = clTrailingOWS
			}
		default:
			p.fail(off+j, "invalid Content-Length")
			return false
		}
	}
	return true
}

// teValue reads a Transfer-Encoding list and keeps what the framing
// depends on: how many codings are chunked and whether the last one is.
func (p *parser) teValue(v []byte) {
	for _, c := range v {
		switch {
		case c == ',':
			p.endCoding()
			p.teState = teBetween
		case c == ' ' || c == '\t':
			if p.teState == teToken {
				p.endCoding()
				p.teState = teAfter
			}
		default:
			if p.teState != teToken {
				if p.teState == teAfter {
					// A second word after a coding and its OWS,
					// with no comma: not a list of codings.
					p.teBad = true
				}
				p.teState, p.teMatch, p.teLen = teToken, 0, 0
			}
			if p.teMatch >= 0 && p.teMatch < len("chunked") && c|0x20 == "chunked"[p.teMatch] {
				p.teMatch++
			} else {
				p.teMatch = -1
			}
			p.teLen++
		}
	}
}

// endCoding closes the coding being read, if any.
func (p *parser) endCoding() {
	if p.teState != teToken {
		return
	}
	if p.teMatch == len("chunked") && p.teLen == len("chunked") {
		p.chunkedN++
		p.lastChunked = true
	} else {
		p.lastChunked = false
	}
}

// endLine is the LF at b[i] ending a line of a head or of the trailer
// section.
func (p *parser) endLine(i int) bool {
	empty := p.lineLen == 0
	p.lineLen = 0
	if p.state == stTrailer {
		if empty {
			p.endMessage()
			return true
		}
		if !p.inValue {
			p.fail(i, "trailer field line without a colon")
			return false
		}
		p.inValue, p.nameLen = false, 0
		return true
	}
	if p.lines == 0 {
		if empty {
			// RFC 9112 §2.2 lets a server skip it; net/http does not, and
			// refuses what follows as a request line.
			p.fail(i, "empty line where a request line was expected")
			return false
		}
		p.lines = 1
		return p.endRequestLine(i)
	}
	if empty {
		return p.endHead(i)
	}
	p.lines++
	if !p.inValue {
		p.fail(i, "field line without a colon")
		return false
	}
	switch p.field {
	case fContentLength:
		if p.clState == clLeadingOWS {
			p.fail(i, "empty Content-Length")
			return false
		}
		if p.clSeen && p.clVal != p.cl {
			p.fail(i, "conflicting Content-Length values")
			return false
		}
		p.clSeen, p.cl = true, p.clVal
	case fTransferEncoding:
		p.endCoding()
	}
	p.inValue, p.nameLen, p.field = false, 0, fOther
	return true
}

// endRequestLine checks the request line as a whole. Its syntax (method,
// target, version) is net/http's to check; the guard checks what net/http
// lets through and what changes how the rest is read.
func (p *parser) endRequestLine(i int) bool {
	method := p.method[:min(p.methodLen, len(p.method))]
	if p.methodLen > len(p.method) {
		method = nil // longer than any method the guard cares about
	}
	ver := p.version[:min(p.verLen, len(p.version))]
	if p.verLen > len(p.version) {
		ver = nil
	}
	if string(method) == "PRI" && p.form == formAsterisk && p.targetLen == 1 && string(ver) == "HTTP/2.0" {
		// The HTTP/2 connection preface: net/http serves it (h2c) or
		// refuses it; either way it is not HTTP/1 any more.
		p.state = stPass
		return true
	}
	// Before HTTP/1.1 (net/http's ProtoAtLeast(1, 1) is false), net/http
	// ignores Transfer-Encoding; endHead refuses it.
	if len(ver) == 8 && string(ver[:5]) == "HTTP/" && ver[6] == '.' && isDigit(ver[5]) && isDigit(ver[7]) {
		p.http10 = ver[5] < '1' || ver[5] == '1' && ver[7] < '1'
	}
	p.connect = string(method) == "CONNECT"
	if p.rl != rlVersion {
		return true // no version: net/http refuses the line
	}
	switch {
	case p.connect:
		// authority-form; net/http checks it.
	case p.form == formAsterisk && p.targetLen == 1 && string(method) != "OPTIONS":
		p.fail(i, "asterisk-form request target (*) is for OPTIONS only")
		return false
	case p.form == formAuthority || p.form == formUnknown:
		p.fail(i, "authority-form request target is for CONNECT only")
		return false
	}
	return true
}

// endHead is the blank line ending a head: the framing is decided here.
func (p *parser) endHead(i int) bool {
	switch {
	case p.contentType > 1:
		// A single-valued field given twice: which one the app reads is
		// up to it, and may differ from what a proxy in front checked.
		p.fail(i, "repeated Content-Type")
		return false
	case p.teSeen && p.clSeen:
		p.fail(i, "both Content-Length and Transfer-Encoding")
		return false
	case p.teBad:
		p.fail(i, "invalid Transfer-Encoding")
		return false
	case p.teSeen && p.http10:
		p.fail(i, "Transfer-Encoding in an HTTP/1.0 request")
		return false
	case p.teSeen && p.chunkedN > 1:
		p.fail(i, "chunked applied more than once")
		return false
	case p.teSeen && !p.lastChunked:
		p.fail(i, "chunked is not the final transfer coding")
		return false
	case p.teSeen:
		p.state, p.remain, p.sizeDigits = stChunkSize, 0, 0
	case p.clSeen && p.cl > 0:
		p.state, p.remain = stBodyCL, p.cl
	default:
		p.endMessage()
	}
	return true
}

func (p *parser) startTrailer() {
	p.state = stTrailer
	p.lineLen, p.crPending, p.inValue, p.nameLen = 0, false, false, 0
}

// endMessage is the end of a request, body included.
func (p *parser) endMessage() {
	paused := p.upgrade || p.connect
	n := p.messages + 1
	*p = parser{messages: n}
	if paused {
		p.state = stPaused
	}
}

// resume makes a paused parser read a request head again: net/http is
// reading the next request, so the connection did not switch protocols.
func (p *parser) resume() {
	if p.state == stPaused {
		p.state = stHead
	}
}

// extByte follows byte c (not CR or LF) of a chunk-size line after the
// size, and returns why it is wrong ("" when it is not).
func (p *parser) extByte(c byte) string {
	ws := c == ' ' || c == '\t'
	switch p.ext {
	case exSize, exAfterName, exAfterValue:
		switch {
		case ws:
			p.sizeBWS = p.sizeBWS || p.ext == exSize
		case c == ';':
			p.ext = exBeforeName
		case c == '=' && p.ext == exAfterName:
			p.ext = exBeforeValue
		case p.ext == exSize:
			// net/http reads the size up to ";" or the line end.
			return "invalid chunk size"
		default:
			return "invalid chunk extension"
		}
	case exBeforeName, exBeforeValue:
		switch {
		case ws:
		case tchar[c] && p.ext == exBeforeName:
			p.ext = exName
		case tchar[c]:
			p.ext = exToken
		case c == '"' && p.ext == exBeforeValue:
			p.ext = exQuoted
		default:
			return "invalid chunk extension"
		}
	case exName, exToken:
		switch {
		case tchar[c]:
		case ws && p.ext == exName:
			p.ext = exAfterName
		case ws:
			p.ext = exAfterValue
		case c == ';':
			p.ext = exBeforeName
		case c == '=' && p.ext == exName:
			p.ext = exBeforeValue
		default:
			return "invalid chunk extension"
		}
	case exQuoted:
		switch {
		case c == '"':
			p.ext = exAfterValue
		case c == '\\':
			p.ext = exQuotedEscape
		case c < ' ' && c != '\t' || c == 0x7f:
			return "control character in a chunk extension"
		}
	case exQuotedEscape:
		if c < ' ' && c != '\t' || c == 0x7f {
			return "control character in a chunk extension"
		}
		p.ext = exQuoted
	}
	return ""
}

// endExt is the CR ending a chunk-size line.
func (p *parser) endExt() string {
	switch p.ext {
	case exSize:
		if p.sizeBWS {
			// BWS is only allowed before a ";".
			return "whitespace after a chunk size"
		}
	case exName, exAfterName, exToken, exAfterValue:
	case exQuoted, exQuotedEscape:
		return "unterminated quoted string in a chunk extension"
	default:
		return "invalid chunk extension"
	}
	return ""
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// tchar is RFC 9110's token characters, the characters of a field name.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// forbiddenTrailer reports whether a trailer field named name (lower
// case) is refused. RFC 9110 §6.5.1 keeps out of trailers what a recipient
// would act on before or instead of the head; these are the fields that
// frame or route a request, or change how it is authenticated or decoded
// (Content-Length, Transfer-Encoding and Host are the classic smuggling
// ones). Content-Type and the request modifiers (Range, If-*, ...) are
// let through: gunicorn and llhttp accept them in trailers, and net/http
// keeps trailers apart from the head (Request.Trailer) anyway.
func forbiddenTrailer(name []byte) bool {
	switch string(name) {
	case "content-length", "transfer-encoding", "host", "trailer", "te",
		"connection", "keep-alive", "proxy-connection", "upgrade",
		"expect", "max-forwards", "content-encoding", "content-range",
		"authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	return false
}
