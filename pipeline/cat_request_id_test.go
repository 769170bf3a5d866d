package pipeline

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCatRequestID(t *testing.T) {
	const valid = "req-0123abcd-4567-4abc-8def-0123456789ab"
	tests := []struct {
		name       string
		opts       map[string]string
		incoming   string
		header     string // response header to read
		wantExact  string // "" means a fresh id is expected
		notEqualTo string
	}{
		{name: "generated", header: "X-Openstack-Request-Id"},
		{name: "incoming ignored by default", incoming: valid, header: "X-Openstack-Request-Id", notEqualTo: valid},
		{name: "trusted incoming", opts: map[string]string{"trust_incoming": "true"}, incoming: valid, header: "X-Openstack-Request-Id", wantExact: valid},
		{name: "trusted but malformed", opts: map[string]string{"trust_incoming": "yes"}, incoming: "req-<script>", header: "X-Openstack-Request-Id", notEqualTo: "req-<script>"},
		{name: "trusted but upper case", opts: map[string]string{"trust_incoming": "1"}, incoming: "req-0123ABCD-4567-4abc-8def-0123456789ab", header: "X-Openstack-Request-Id"},
		{name: "custom header", opts: map[string]string{"header": "x-request-id"}, header: "X-Request-Id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen string
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestID(r) })
			h := mustFilter(t, requestIDFactory(), tt.opts)(next)
			req := httptest.NewRequest("GET", "/", nil)
			if tt.incoming != "" {
				req.Header.Set(tt.header, tt.incoming)
			}
			rec := serve(h, req)
			got := rec.Header().Get(tt.header)
			if got != seen {
				t.Errorf("response header %q != context id %q", got, seen)
			}
			if tt.wantExact != "" {
				if got != tt.wantExact {
					t.Errorf("id %q, want %q", got, tt.wantExact)
				}
				return
			}
			if !validRequestID(got) {
				t.Errorf("generated id %q is not req-<uuid4>", got)
			}
			if got[4+14] != '4' || (got[4+19] < '8' || got[4+19] > 'b') {
				t.Errorf("id %q lacks UUID version 4 / RFC 4122 variant bits", got)
			}
			if tt.notEqualTo != "" && got == tt.notEqualTo {
				t.Errorf("untrusted incoming id %q was used", got)
			}
		})
	}
	t.Run("unique", func(t *testing.T) {
		ids := map[string]bool{}
		for range 1000 {
			id := newRequestIDString()
			if ids[id] {
				t.Fatalf("duplicate id %s", id)
			}
			ids[id] = true
		}
	})
	t.Run("config errors", func(t *testing.T) {
		for _, opts := range []map[string]string{{"header": "Bad Header"}, {"header": ""}, {"trust_incoming": "sure"}} {
			_, err := requestIDFactory().Filter(catConfig(opts))
			wantConfigError(t, err)
		}
	})
}

func TestCatValidRequestID(t *testing.T) {
	for s, want := range map[string]bool{
		"req-0123abcd-4567-4abc-8def-0123456789ab":  true,
		"req-0123abcd-4567-4abc-8def-0123456789a":   false,
		"req-0123abcd-4567-4abc-8def-0123456789abc": false,
		"REQ-0123abcd-4567-4abc-8def-0123456789ab":  false,
		"req-0123abcd_4567-4abc-8def-0123456789ab":  false,
		"req-0123abcg-4567-4abc-8def-0123456789ab":  false,
		"": false,
	} {
		if got := validRequestID(s); got != want {
			t.Errorf("validRequestID(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestCatRequestMetadata covers the context value request_id, urlmap and
// http_proxy_to_wsgi share (request.go): each setter keeps the other
// field, leaves the original request alone, and the context still carries
// the parent's values and cancellation.
func TestCatRequestMetadata(t *testing.T) {
	type otherKey struct{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "v"))
	defer cancel()
	r0 := httptest.NewRequest("GET", "/x", nil).WithContext(ctx)

	r1 := WithScriptName(r0, "/api")
	r2 := WithRequestID(r1, "req-1")
	r3 := WithScriptName(r2, "/api/v2")
	for _, c := range []struct {
		r          *http.Request
		script, id string
	}{{r0, "", ""}, {r1, "/api", ""}, {r2, "/api", "req-1"}, {r3, "/api/v2", "req-1"}} {
		if got := ScriptName(c.r); got != c.script {
			t.Errorf("ScriptName = %q, want %q", got, c.script)
		}
		if got := RequestID(c.r); got != c.id {
			t.Errorf("RequestID = %q, want %q", got, c.id)
		}
	}
	if r3.Context().Value(otherKey{}) != "v" {
		t.Error("parent context value lost")
	}
	child, stop := context.WithCancel(r3.Context())
	defer stop()
	cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancellation did not reach a context derived from the request")
	}
	if r3.Context().Err() != context.Canceled {
		t.Errorf("Err = %v, want context.Canceled", r3.Context().Err())
	}
}
