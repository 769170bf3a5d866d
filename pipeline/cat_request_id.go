package pipeline

import (
	"crypto/rand"
	"net/http"
	"net/textproto"
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
			w.Header()[header] = []string{id}
			next.ServeHTTP(w, WithRequestID(r, id))
		})
	}, nil
}

// newRequestIDString returns "req-" and a random (version 4) UUID.
func newRequestIDString() string {
	var u [16]byte
	// crypto/rand.Read never fails; the runtime aborts if entropy is
	// unavailable, which is the right outcome for an id meant to be unique.
	_, _ = rand.Read(u[:])
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
