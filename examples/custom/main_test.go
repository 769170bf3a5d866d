package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"paddock/pipeline"
)

func TestCustomFactoriesServe(t *testing.T) {
	p, err := pipeline.Load(pipeline.LoadOptions{Path: "custom.ini", Registry: newRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srv := httptest.NewServer(p.Handler)
	defer srv.Close()
	tests := []struct {
		path, auth string
		code       int
		body       string
	}{
		{"/hello/ann", "", 200, "Howdy, ann! (mounted at \"/hello\")\n"},
		{"/private/bob", "", 401, "unauthorized\n"},
		{"/private/bob", "Bearer s3cret", 200, "Howdy, bob! (mounted at \"/private\")\n"},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || string(body) != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}
}

func TestWithoutTheCustomRegistryTheConfigFails(t *testing.T) {
	_, err := pipeline.Load(pipeline.LoadOptions{Path: "custom.ini"})
	if err == nil {
		t.Fatal("custom.ini loaded without its factories")
	}
}
