package pipeline

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCatHello(t *testing.T) {
	tests := []struct {
		name       string
		opts       map[string]string
		method     string
		wantStatus int
		wantBody   string
		wantCType  string
		wantErr    bool
	}{
		{name: "defaults", method: "GET", wantStatus: 200, wantBody: "Hello from paddock\n", wantCType: "text/plain; charset=utf-8"},
		{name: "custom", opts: map[string]string{"body": "hi", "status": "201", "content_type": "application/x-test"}, method: "GET", wantStatus: 201, wantBody: "hi", wantCType: "application/x-test"},
		{name: "head has no body", method: "HEAD", wantStatus: 200, wantBody: "", wantCType: "text/plain; charset=utf-8"},
		{name: "status not a number", opts: map[string]string{"status": "abc"}, wantErr: true},
		{name: "status out of range", opts: map[string]string{"status": "42"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := catConfig(tt.opts)
			h, err := helloFactory().App(c)
			if tt.wantErr {
				wantConfigError(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rec := serve(h, httptest.NewRequest(tt.method, "/", nil))
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
			}
			if got := rec.Header().Get("Content-Type"); got != tt.wantCType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantCType)
			}
		})
	}
}

func TestCatRegisterBuiltins(t *testing.T) {
	// A fresh registry with just the catalog (NewDefaultRegistry adds the
	// server factories too).
	r := NewRegistry()
	RegisterBuiltins(r)
	want := map[string]Kind{
		"egg:paddock#hello":                                          KindApp,
		"egg:paddock#static":                                         KindApp,
		"egg:Paste#static":                                           KindApp,
		"paste.urlparser:make_static":                                KindApp,
		"egg:paddock#proxy":                                          KindApp,
		"egg:Paste#proxy":                                            KindApp,
		"paste.proxy:make_proxy":                                     KindApp,
		"egg:paddock#healthcheck":                                    KindApp,
		"egg:oslo.middleware#healthcheck":                            KindApp,
		"oslo_middleware:Healthcheck.app_factory":                    KindApp,
		"egg:paddock#healthcheck_filter":                             KindFilter,
		"oslo_middleware:Healthcheck.factory":                        KindFilter,
		"egg:paddock#urlmap":                                         KindComposite,
		"egg:Paste#urlmap":                                           KindComposite,
		"paste.urlmap:urlmap_factory":                                KindComposite,
		"egg:paddock#cascade":                                        KindComposite,
		"egg:Paste#cascade":                                          KindComposite,
		"paste.cascade:make_cascade":                                 KindComposite,
		"egg:paddock#cgi":                                            KindApp,
		"egg:Paste#cgi":                                              KindApp,
		"paste.cgiapp:make_cgi_application":                          KindApp,
		"egg:paddock#redirect":                                       KindApp,
		"egg:paddock#cors":                                           KindFilter,
		"egg:oslo.middleware#cors":                                   KindFilter,
		"oslo_middleware.cors:filter_factory":                        KindFilter,
		"oslo_middleware:CORS.factory":                               KindFilter,
		"oslo_middleware.cors:CORS.factory":                          KindFilter,
		"egg:paddock#sizelimit":                                      KindFilter,
		"egg:oslo.middleware#sizelimit":                              KindFilter,
		"oslo_middleware.sizelimit:RequestBodySizeLimiter.factory":   KindFilter,
		"oslo_middleware:RequestBodySizeLimiter.factory":             KindFilter,
		"egg:paddock#request_id":                                     KindFilter,
		"egg:oslo.middleware#request_id":                             KindFilter,
		"oslo_middleware:RequestId.factory":                          KindFilter,
		"oslo_middleware.request_id:RequestId.factory":               KindFilter,
		"egg:paddock#http_proxy_to_wsgi":                             KindFilter,
		"egg:oslo.middleware#http_proxy_to_wsgi":                     KindFilter,
		"oslo_middleware:HTTPProxyToWSGI.factory":                    KindFilter,
		"oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory": KindFilter,
		"egg:paddock#catch_errors":                                   KindFilter,
		"egg:oslo.middleware#catch_errors":                           KindFilter,
		"oslo_middleware:CatchErrors.factory":                        KindFilter,
		"oslo_middleware.catch_errors:CatchErrors.factory":           KindFilter,
		"egg:Paste#error_catcher":                                    KindFilter,
		"egg:paddock#translogger":                                    KindFilter,
		"egg:Paste#translogger":                                      KindFilter,
		"paste.translogger:make_filter":                              KindFilter,
		"egg:paddock#headers":                                        KindFilter,
		"egg:paddock#gzip":                                           KindFilter,
		"egg:Paste#gzip":                                             KindFilter,
		"paste.gzipper:make_gzip_middleware":                         KindFilter,
		"egg:paddock#basic_auth":                                     KindFilter,
		"egg:Paste#auth_basic":                                       KindFilter,
		"paste.auth.basic:make_basic":                                KindFilter,
		"egg:paddock#ratelimit":                                      KindFilter,
		"egg:paddock#timeout":                                        KindFilter,
		"egg:paddock#errordocument":                                  KindFilter,
		"egg:Paste#errordocument":                                    KindFilter,
		"paste.errordocument:make_errordocument":                     KindFilter,
		"egg:paddock#http":                                           KindServer,
		"egg:paddock#metrics":                                        KindApp,
		"egg:paddock#main":                                           KindServer,
		"egg:gunicorn#main":                                          KindServer,
		"egg:Paste#http":                                             KindServer,
		"egg:waitress#main":                                          KindServer,
		"egg:PasteScript#wsgiutils":                                  KindServer,
	}
	for name, kind := range want {
		f, ok := r.Lookup(name)
		if !ok {
			t.Errorf("%s: not registered", name)
			continue
		}
		if f.Kind != kind {
			t.Errorf("%s: kind %v, want %v", name, f.Kind, kind)
		}
		if f.Doc == "" {
			t.Errorf("%s: no Doc", name)
		}
	}
	// The healthcheck egg names are an app and a filter, like oslo's.
	for _, name := range []string{"egg:paddock#healthcheck", "egg:oslo.middleware#healthcheck"} {
		kinds := map[Kind]bool{}
		for _, f := range r.LookupAll(name) {
			kinds[f.Kind] = true
		}
		if !kinds[KindApp] || !kinds[KindFilter] || len(kinds) != 2 {
			t.Errorf("%s: kinds %v, want app and filter", name, kinds)
		}
	}
	if got := len(r.Names()); got != len(want) {
		t.Errorf("registry holds %d names, test lists %d: %v", got, len(want), r.Names())
	}
	// Egg names are matched the way PasteDeploy matches them.
	if _, ok := r.Lookup("egg:oslo_middleware#cors"); !ok {
		t.Error("egg:oslo_middleware#cors should find the cors filter")
	}
	if _, ok := r.Lookup("egg:paste#urlmap"); !ok {
		t.Error("egg:paste#urlmap should find urlmap")
	}
}

var _ http.Handler = (*helloApp)(nil)
