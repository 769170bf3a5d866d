package pipeline

import (
	"net/http"
	"strconv"
)

func helloFactory() Factory {
	return App("fixed response body, for smoke tests and benchmarks", func(c *Config) (http.Handler, error) {
		body := c.String("body", "Hello from paddock\n")
		status, err := c.Int("status", http.StatusOK)
		if err != nil {
			return nil, err
		}
		if status < 100 || status > 999 {
			return nil, c.Errorf("status", "status: %d is not an HTTP status code", status)
		}
		ctype := c.String("content_type", "text/plain; charset=utf-8")
		return &helloApp{body: []byte(body), status: status, ctype: []string{ctype}, length: []string{strconv.Itoa(len(body))}}, nil
	})
}

type helloApp struct {
	body   []byte
	status int
	ctype  []string
	length []string
}

func (h *helloApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	// Shared slices: the header map never modifies them, so no per-request
	// allocation for the two fixed headers.
	hdr["Content-Type"] = h.ctype
	hdr["Content-Length"] = h.length
	w.WriteHeader(h.status)
	if r.Method != http.MethodHead {
		w.Write(h.body)
	}
}
