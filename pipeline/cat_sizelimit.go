package pipeline

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// sizelimitFactory rejects request bodies over a limit, like
// oslo_middleware.sizelimit.RequestBodySizeLimiter.
func sizelimitFactory() Factory {
	return Filter("rejects request bodies over max_request_body_size with 413 (oslo.middleware sizelimit)", newSizeLimit)
}

// oslo's default max_request_body_size (112 KiB).
const sizelimitDefault = 114688

func newSizeLimit(c *Config) (Middleware, error) {
	catAcceptOptions(c, "oslo_config_project", "oslo_config_file", "oslo_config_program")
	limit, err := c.Int64("max_request_body_size", sizelimitDefault)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, c.Errorf("max_request_body_size", "max_request_body_size: must not be negative, got %d", limit)
	}
	msg := "Request is too large. Larger than max_request_body_size (" + strconv.FormatInt(limit, 10) + ").\n"
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				catWriteText(w, http.StatusRequestEntityTooLarge, msg)
				return
			}
			// A known length within the limit (net/http already caps the
			// body at Content-Length) or no body: nothing to do.
			if r.ContentLength >= 0 || r.Body == nil || r.Body == http.NoBody {
				next.ServeHTTP(w, r)
				return
			}
			serveLimited(next, w, r, limit, msg)
		})
	}, nil
}

// limitState is the per-request state for a body of unknown length,
// allocated once for request copy, body and writer together.
type limitState struct {
	req  http.Request
	body limitBody
	w    limitWriter
}

func serveLimited(next http.Handler, w http.ResponseWriter, r *http.Request, limit int64, msg string) {
	st := &limitState{req: *r}
	// MaxBytesReader gets the server's own writer: it tells net/http to
	// close the connection after the response, as the rest of the body is
	// left unread.
	st.body = limitBody{rc: http.MaxBytesReader(w, r.Body, limit)}
	st.req.Body = &st.body
	st.w = limitWriter{w: w, body: &st.body, msg: msg}
	next.ServeHTTP(&st.w, &st.req)
	if !st.w.wrote && st.body.exceeded {
		catWriteText(w, http.StatusRequestEntityTooLarge, msg)
	}
}

// limitBody records that the limit was hit, whatever the handler then
// does with the error.
type limitBody struct {
	rc       io.ReadCloser
	exceeded bool
}

func (b *limitBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			b.exceeded = true
		}
	}
	return n, err
}

func (b *limitBody) Close() error { return b.rc.Close() }

// limitWriter turns the error response of a handler that failed on the
// oversized body (typically a 400 "cannot decode") into the 413 the client
// needs to see. Successful responses are left alone.
type limitWriter struct {
	w         http.ResponseWriter
	body      *limitBody
	msg       string
	wrote     bool
	swallowed bool
}

func (lw *limitWriter) Header() http.Header { return lw.w.Header() }

func (lw *limitWriter) WriteHeader(code int) {
	if lw.swallowed {
		return
	}
	if !lw.wrote && (code < 100 || code >= 200 || code == http.StatusSwitchingProtocols) {
		lw.wrote = true
		if lw.body.exceeded && code >= 400 {
			lw.swallowed = true
			catWriteText(lw.w, http.StatusRequestEntityTooLarge, lw.msg)
			return
		}
	}
	lw.w.WriteHeader(code)
}

func (lw *limitWriter) Write(p []byte) (int, error) {
	if !lw.wrote {
		lw.WriteHeader(http.StatusOK)
	}
	if lw.swallowed {
		return len(p), nil
	}
	return lw.w.Write(p)
}

func (lw *limitWriter) Flush() {
	if !lw.wrote {
		lw.WriteHeader(http.StatusOK)
	}
	if lw.swallowed {
		return
	}
	_ = http.NewResponseController(lw.w).Flush()
}

func (lw *limitWriter) Unwrap() http.ResponseWriter { return lw.w }
