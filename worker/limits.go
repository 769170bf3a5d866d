package worker

import (
	"fmt"
	"net/http"

	"github.com/hashicorp/go-hclog"
)

// Go's server bounds the whole request head (request line and headers)
// with http.Server.MaxHeaderBytes and answers 431 past it; it has no
// per-line limits. gunicorn has three: limit_request_line,
// limit_request_fields and limit_request_field_size. limits derives
// MaxHeaderBytes so that Go's total never fires first for a request within
// the three, and checks the three itself in a thin handler in front of the
// pipeline, before any of it runs.
type limits struct {
	line      int // 0: no own limit
	fields    int
	fieldSize int // 0: no own limit
}

const (
	// unlimitedBudget stands for a limit set to 0 when sizing
	// MaxHeaderBytes, which cannot be unlimited.
	unlimitedBudget = 1 << 20
	// maxHeaderBytesCap keeps the derived total sane when limits are off.
	maxHeaderBytesCap = 8 << 20
)

func newLimits(s *Settings) limits {
	return limits{line: s.LimitRequestLine, fields: s.LimitRequestFields, fieldSize: s.LimitRequestFieldSize}
}

// maxHeaderBytes is the request line plus every field at its largest, each
// with its CRLF, plus the blank line.
func (l limits) maxHeaderBytes() int {
	line, size := l.line, l.fieldSize
	if line == 0 {
		line = unlimitedBudget
	}
	if size == 0 {
		size = unlimitedBudget
	}
	return min(line+2+l.fields*(size+2)+2, maxHeaderBytesCap)
}

// wrap checks a parsed request against the limits. A request over one gets
// a 4xx and Connection: close (the client is misbehaving or hostile; the
// rest of the connection is not worth reading), never a 5xx:
//   - request line too long: 414 URI Too Long (RFC 9112 §3; the target is
//     what makes a request line long), where gunicorn says 400;
//   - too many fields or one field too large: 431 Request Header Fields
//     Too Large (RFC 6585), what Go answers for the total.
func (l limits) wrap(next http.Handler, log hclog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, msg := l.check(r); status != 0 {
			log.Debug("request over limits", "status", status, "reason", msg, "remote_addr", r.RemoteAddr)
			w.Header().Set("Connection", "close")
			http.Error(w, msg, status)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// check returns the status and message for a request over a limit, or 0.
// Sizes are reconstructed from the parsed request: "METHOD SP target SP
// proto" and "Name: value" CRLF, which is what a well-formed client sent.
func (l limits) check(r *http.Request) (int, string) {
	if l.line > 0 {
		if n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto); n > l.line {
			return http.StatusRequestURITooLong, fmt.Sprintf("Request Line is too large (%d > %d)", n, l.line)
		}
	}
	// Go moves the Host field out of the header map; it still counts.
	count := 0
	if r.Host != "" {
		count = 1
		if l.fieldSize > 0 && len("Host")+2+len(r.Host)+2 > l.fieldSize {
			return http.StatusRequestHeaderFieldsTooLarge, "Request header field is too large: Host"
		}
	}
	for name, values := range r.Header {
		count += len(values)
		if l.fieldSize == 0 {
			continue
		}
		for _, v := range values {
			// gunicorn counts a field's line with its CRLF.
			if n := len(name) + 2 + len(v) + 2; n > l.fieldSize {
				return http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("Request header field is too large: %s (%d > %d)", name, n, l.fieldSize)
			}
		}
	}
	if count > l.fields {
		return http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("Too many request header fields (%d > %d)", count, l.fields)
	}
	return 0, ""
}
