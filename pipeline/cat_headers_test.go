package pipeline

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCatHeaders(t *testing.T) {
	tests := []struct {
		name       string
		opts       map[string]string
		reqHeader  http.Header // sent by the client
		appHeader  http.Header // set by the app before it writes
		noWrite    bool        // the app returns without writing
		status     int         // the app's WriteHeader; 0: Write only
		wantReq    http.Header // seen by the app; nil values mean absent
		wantResp   http.Header // sent to the client; nil values mean absent
		wantStatus int
	}{
		{
			name:      "request set replaces, add appends, remove deletes",
			opts:      map[string]string{"request_set": "X-Tenant: blue\nX-Multi: a\nx-multi: b", "request_add": "Via: 1.1 paddock", "request_remove": "X-Secret Cookie"},
			reqHeader: http.Header{"X-Tenant": {"red"}, "Via": {"1.0 lb"}, "X-Secret": {"s"}, "Cookie": {"c=1"}, "Accept": {"*/*"}},
			wantReq:   http.Header{"X-Tenant": {"blue"}, "X-Multi": {"a", "b"}, "Via": {"1.0 lb", "1.1 paddock"}, "X-Secret": nil, "Cookie": nil, "Accept": {"*/*"}},
			wantResp:  http.Header{"X-Tenant": nil},
		},
		{
			name:      "request remove only, header absent",
			opts:      map[string]string{"request_remove": "X-Secret"},
			reqHeader: http.Header{"Accept": {"*/*"}},
			wantReq:   http.Header{"Accept": {"*/*"}, "X-Secret": nil},
		},
		{
			name:      "request names are case-insensitive",
			opts:      map[string]string{"request_remove": "x-secret,x-other", "request_set": "x-forwarded-prefix: /api"},
			reqHeader: http.Header{"X-Secret": {"s"}, "X-Other": {"o"}},
			wantReq:   http.Header{"X-Secret": nil, "X-Other": nil, "X-Forwarded-Prefix": {"/api"}},
		},
		{
			name:       "response set, add, remove before WriteHeader",
			opts:       map[string]string{"response_set": "X-Frame-Options: DENY\nCache-Control: no-store", "response_add": "Vary: Accept-Encoding", "response_remove": "Server\nX-Powered-By"},
			appHeader:  http.Header{"Server": {"app/1"}, "X-Powered-By": {"php"}, "Cache-Control": {"max-age=60"}, "Vary": {"Origin"}},
			status:     http.StatusCreated,
			wantResp:   http.Header{"X-Frame-Options": {"DENY"}, "Cache-Control": {"no-store"}, "Vary": {"Origin", "Accept-Encoding"}, "Server": nil, "X-Powered-By": nil},
			wantStatus: http.StatusCreated,
		},
		{
			name:       "response edits on implicit WriteHeader",
			opts:       map[string]string{"response_set": "X-Content-Type-Options: nosniff"},
			wantResp:   http.Header{"X-Content-Type-Options": {"nosniff"}},
			wantStatus: http.StatusOK,
		},
		{
			name:       "response edits when the app writes nothing",
			opts:       map[string]string{"response_set": "X-Content-Type-Options: nosniff", "response_remove": "X-Debug"},
			appHeader:  http.Header{"X-Debug": {"1"}},
			noWrite:    true,
			wantResp:   http.Header{"X-Content-Type-Options": {"nosniff"}, "X-Debug": nil},
			wantStatus: http.StatusOK,
		},
		{
			name:       "response edits apply to error statuses",
			opts:       map[string]string{"response_set": "Cache-Control: no-store"},
			status:     http.StatusNotFound,
			wantResp:   http.Header{"Cache-Control": {"no-store"}},
			wantStatus: http.StatusNotFound,
		},
		{
			name:       "values keep inner colons and spaces",
			opts:       map[string]string{"response_set": "Link:  <https://a.example/x>; rel=preload  \n\nContent-Security-Policy: default-src 'self'"},
			wantResp:   http.Header{"Link": {"<https://a.example/x>; rel=preload"}, "Content-Security-Policy": {"default-src 'self'"}},
			wantStatus: http.StatusOK,
		},
		{
			name:       "empty value is allowed",
			opts:       map[string]string{"response_set": "X-Empty:"},
			wantResp:   http.Header{"X-Empty": {""}},
			wantStatus: http.StatusOK,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen http.Header
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = r.Header.Clone()
				for k, v := range tt.appHeader {
					w.Header()[k] = v
				}
				if tt.noWrite {
					return
				}
				if tt.status != 0 {
					w.WriteHeader(tt.status)
				}
				w.Write([]byte("body"))
			})
			h := mustFilter(t, headersFactory(), tt.opts)(next)
			req := httptest.NewRequest("GET", "/", nil)
			for k, v := range tt.reqHeader {
				req.Header[k] = append([]string(nil), v...)
			}
			before := req.Header.Clone()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()

			for k, want := range tt.wantReq {
				if got := seen[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("app saw %s = %q, want %q", k, got, want)
				}
			}
			if !reflect.DeepEqual(req.Header, before) {
				t.Errorf("caller's request header modified: %v, was %v", req.Header, before)
			}
			for k, want := range tt.wantResp {
				if got := res.Header[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("response %s = %q, want %q", k, got, want)
				}
			}
			if tt.wantStatus != 0 && res.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", res.StatusCode, tt.wantStatus)
			}
		})
	}
}

func TestCatHeadersConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		opts map[string]string
		want string
	}{
		{"name with space", map[string]string{"response_set": "Bad Name: x"}, `response_set: "Bad Name" is not a valid header name`},
		{"missing colon", map[string]string{"request_set": "X-A: 1\nX-B 2"}, `request_set (value line 2): "X-B 2": want "Name: value"`},
		{"empty name", map[string]string{"response_add": ": v"}, `response_add: "" is not a valid header name`},
		{"control character in value", map[string]string{"response_set": "X-A: a\x00b"}, `response_set: value of X-A contains control characters`},
		{"carriage return in value", map[string]string{"request_add": "X-A: a\rSet-Cookie: x"}, `request_add: value of X-A contains control characters`},
		{"remove bad name", map[string]string{"response_remove": "Server X(Y)"}, `response_remove: "X(Y)" is not a valid header name`},
		{"remove host", map[string]string{"request_remove": "host"}, `request_remove: Host cannot be removed`},
		{"set content-length", map[string]string{"response_set": "content-length: 5"}, `Content-Length cannot be configured`},
		{"add transfer-encoding", map[string]string{"request_add": "Transfer-Encoding: chunked"}, `Transfer-Encoding cannot be configured`},
		{"set request host", map[string]string{"request_set": "Host: evil.example"}, `Host cannot be configured`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := headersFactory().Filter(catConfig(tt.opts))
			wantConfigError(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}

	t.Run("located at file:line", func(t *testing.T) {
		path := writeINI(t, "main.ini", "[pipeline:main]\npipeline = hdr hello\n\n[filter:hdr]\nuse = egg:paddock#headers\nresponse_set =\n    X-Ok: 1\n    X-Bad: a\x01b\n\n[app:hello]\nuse = egg:paddock#hello\n")
		_, err := Load(LoadOptions{Path: path})
		if err == nil {
			t.Fatal("loaded")
		}
		want := `main.ini:6: [filter:hdr]: response_set (value line 3): value of X-Bad contains control characters`
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	})
}

// TestCatHeadersWriter checks the response wrapper: used only when there
// are response edits, transparent to http.ResponseController, and free of
// allocations on the pass-through path.
func TestCatHeadersWriter(t *testing.T) {
	t.Run("request-only options use no wrapper", func(t *testing.T) {
		outer := newNopWriter()
		var inner http.ResponseWriter
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner = w })
		h := mustFilter(t, headersFactory(), map[string]string{"request_set": "X-A: 1", "request_remove": "X-B"})(next)
		h.ServeHTTP(outer, httptest.NewRequest("GET", "/", nil))
		if inner != http.ResponseWriter(outer) {
			t.Errorf("inner handler got %T, want the outer writer", inner)
		}
	})

	t.Run("no options is a no-op", func(t *testing.T) {
		mw := mustFilter(t, headersFactory(), nil)
		if got := mw(okHandler); reflect.ValueOf(got).Pointer() != reflect.ValueOf(okHandler).Pointer() {
			t.Error("filter without options wraps the handler")
		}
	})

	t.Run("1xx does not commit", func(t *testing.T) {
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("X-Late", "1") // after 103, before the final header
			w.WriteHeader(http.StatusOK)
		})
		h := mustFilter(t, headersFactory(), map[string]string{"response_remove": "X-Late"})(next)
		rec := serve(h, httptest.NewRequest("GET", "/", nil))
		if got := rec.Result().Header.Get("X-Late"); got != "" {
			t.Errorf("X-Late = %q: edits applied at the 103, not the final header", got)
		}
	})

	t.Run("ResponseController and Flush reach the server", func(t *testing.T) {
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Errorf("SetWriteDeadline through the wrapper: %v", err)
			}
			w.Write([]byte("a"))
			if err := rc.Flush(); err != nil {
				t.Errorf("Flush through the wrapper: %v", err)
			}
			if _, ok := w.(http.Flusher); !ok {
				t.Error("wrapper hides http.Flusher")
			}
		})
		h := mustFilter(t, headersFactory(), map[string]string{"response_set": "X-A: 1"})(next)
		srv := httptest.NewServer(h)
		defer srv.Close()
		res, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.Header.Get("X-A") != "1" || string(body) != "a" {
			t.Errorf("got X-A=%q body=%q", res.Header.Get("X-A"), body)
		}
	})

	t.Run("shared values are not written through", func(t *testing.T) {
		// Inner handlers appending to a header the filter set must not
		// write into the value slice every request shares: with spare
		// capacity, the second append would overwrite the first's value.
		var got [][]string
		n := 0
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			n++
			v := append(w.Header()["X-A"], "appended-"+strconv.Itoa(n))
			got = append(got, v)
		})
		h := mustFilter(t, headersFactory(), map[string]string{"response_set": "X-A: 1\nX-A: 2"})(next)
		serve(h, httptest.NewRequest("GET", "/", nil))
		serve(h, httptest.NewRequest("GET", "/", nil))
		if want := []string{"1", "2", "appended-1"}; !reflect.DeepEqual(got[0], want) {
			t.Errorf("first response's X-A = %q, want %q", got[0], want)
		}
	})

	t.Run("no allocations", func(t *testing.T) {
		req := httptest.NewRequest("GET", "/", nil)
		assertNoAllocs(t, mustFilter(t, headersFactory(), map[string]string{"response_set": "X-Content-Type-Options: nosniff", "response_remove": "Server"})(okHandler), req)
		assertNoAllocs(t, mustFilter(t, headersFactory(), map[string]string{"request_remove": "X-Secret"})(okHandler), req)
	})
}
