package pipeline

import (
	"crypto/rand"
	"net/http"
	"net/textproto"
	"sync"
)

// requestIDFactory assigns every request an id, like
// oslo_middleware.request_id.RequestId.
func requestIDFactory() Factory {
	return Filter("assigns a req-<uuid> request id and returns it in a response header (oslo.middleware request_id)", newRequestID)
}

func newRequestID(c *Config) (Middleware, error) {
	catAcceptOptions(c, "oslo_config_project", "oslo_config_file", "oslo_config_program")
	header := textproto.CanonicalMIMEHeaderKey(c.String("header", "X-Openstack-Request-Id"))
	if !validHeaderName(header) {
		return nil, c.Errorf("header", "header: %q is not a valid header name", header)
	}
	trust, err := c.Bool("trust_incoming", false)
	if err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var id string
			if trust {
				// Only a well-formed id is honoured: the value ends up in
				// logs and responses, so arbitrary client text is not.
				if in := r.Header[header]; len(in) == 1 && validRequestID(in[0]) {
					id = in[0]
				}
			}
			if id == "" {
				id = newRequestIDString()
			}
			// The request copy, its context and the header's value slice
			// share one allocation (the id string is the only other):
			// this filter runs on every request.
			st := new(idRequest)
			meta := requestMeta(r)
			meta.requestID = id
			r2 := st.init(r, meta)
			st.hdr[0] = id
			// cap == len: a later Add copies instead of writing into st.
			w.Header()[header] = st.hdr[:]
			next.ServeHTTP(w, r2)
		})
	}, nil
}

// idRequest is the per-request state of the request_id filter.
type idRequest struct {
	metaRequest
	hdr [1]string
}

// idEntropy is a batch of crypto/rand output consumed 16 bytes per id:
// one getrandom per 32 ids instead of one per request. sync.Pool gives each
// goroutine exclusive use of a batch, and consumed bytes are zeroed, so no
// two ids can share bytes.
type idEntropy struct {
	buf [512]byte
	off int
}

var idEntropyPool = sync.Pool{New: func() any { return &idEntropy{off: len(idEntropy{}.buf)} }}

func readIDEntropy(u *[16]byte) {
	e := idEntropyPool.Get().(*idEntropy)
	if e.off+len(u) > len(e.buf) {
		// crypto/rand.Read never fails; the runtime aborts if entropy is
		// unavailable, the right outcome for an id meant to be unique.
		_, _ = rand.Read(e.buf[:])
		e.off = 0
	}
	chunk := e.buf[e.off : e.off+len(u)]
	copy(u[:], chunk)
	clear(chunk)
	e.off += len(u)
	idEntropyPool.Put(e)
}

// newRequestIDString returns "req-" and a random (version 4) UUID.
func newRequestIDString() string {
	var u [16]byte
	readIDEntropy(&u)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hexdig = "0123456789abcdef"
	var b [40]byte
	copy(b[:], "req-")
	j := 4
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j] = hexdig[x>>4]
		b[j+1] = hexdig[x&0x0f]
		j += 2
	}
	return string(b[:])
}

// validRequestID reports whether s is "req-" followed by a lower-case
// 8-4-4-4-12 hex UUID, oslo's accepted global request id form.
func validRequestID(s string) bool {
	if len(s) != 40 || s[:4] != "req-" {
		return false
	}
	for i := 4; i < 40; i++ {
		c := s[i]
		switch i - 4 {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' ||
			c == '+' || c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}
