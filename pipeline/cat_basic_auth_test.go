package pipeline

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"paddock/accesslog"
)

// testHashes are bcrypt hashes at the minimum cost (fast tests), made once.
var testHashes = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	for _, pw := range []string{"s3cret", "hunter2", "pass:with:colons", "ünïcode"} {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		out[pw] = string(h)
	}
	return out
})

// writeHtpasswd writes lines to a file in a temp dir and returns its path.
func writeHtpasswd(t testing.TB, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users.htpasswd")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func basicHeader(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// userEcho answers with the authenticated user.
var userEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte("user=" + RemoteUser(r)))
})

func TestCatBasicAuth(t *testing.T) {
	hs := testHashes()
	file := writeHtpasswd(t,
		"# users of the test",
		"alice:"+hs["s3cret"],
		"",
		"  bob:"+strings.Replace(hs["hunter2"], "$2a$", "$2y$", 1)+"  ",
		"carol:"+strings.Replace(hs["pass:with:colons"], "$2a$", "$2b$", 1),
		"dörte:"+hs["ünïcode"],
	)
	h := mustFilter(t, basicAuthFactory(), map[string]string{"htpasswd": file, "realm": `Admin "zone"`})(userEcho)
	tests := []struct {
		name   string
		auth   []string
		status int
		body   string
	}{
		{name: "no credentials", status: 401},
		{name: "good", auth: []string{basicHeader("alice", "s3cret")}, status: 200, body: "user=alice"},
		{name: "$2y$ hash", auth: []string{basicHeader("bob", "hunter2")}, status: 200, body: "user=bob"},
		{name: "$2b$ hash, colons in password", auth: []string{basicHeader("carol", "pass:with:colons")}, status: 200, body: "user=carol"},
		{name: "UTF-8", auth: []string{basicHeader("dörte", "ünïcode")}, status: 200, body: "user=dörte"},
		{name: "scheme in any case, blanks", auth: []string{"bAsIc   " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) + "  "}, status: 200, body: "user=alice"},
		{name: "wrong password", auth: []string{basicHeader("alice", "S3cret")}, status: 401},
		{name: "another user's password", auth: []string{basicHeader("alice", "hunter2")}, status: 401},
		{name: "unknown user", auth: []string{basicHeader("mallory", "s3cret")}, status: 401},
		{name: "empty password", auth: []string{basicHeader("alice", "")}, status: 401},
		{name: "no colon", auth: []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("alice"))}, status: 401},
		{name: "bad base64", auth: []string{"Basic !!!notbase64"}, status: 401},
		{name: "url-safe base64 is not standard", auth: []string{"Basic " + base64.URLEncoding.EncodeToString([]byte("alice:s3cret?>"))}, status: 401},
		{name: "Bearer", auth: []string{"Bearer abc"}, status: 401},
		{name: "scheme only", auth: []string{"Basic"}, status: 401},
		{name: "huge header", auth: []string{"Basic " + strings.Repeat("QUFB", 1<<18)}, status: 401},
		{name: "second header ignored", auth: []string{"Bearer x", basicHeader("alice", "s3cret")}, status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header["Authorization"] = tt.auth
			rec := serve(h, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if tt.status == 401 {
				if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="Admin \"zone\"", charset="UTF-8"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if strings.Contains(rec.Body.String(), "user=") {
					t.Error("the app ran")
				}
				return
			}
			if rec.Body.String() != tt.body {
				t.Errorf("body %q, want %q", rec.Body.String(), tt.body)
			}
		})
	}
}

// The access log's %(u)s and basic_auth read one header the same way.
func TestCatBasicAuthAgreesWithAccessLog(t *testing.T) {
	f, err := accesslog.Parse("%(u)s")
	if err != nil {
		t.Fatal(err)
	}
	l := accesslog.New(accesslog.Options{Format: f})
	for _, auth := range []string{
		basicHeader("alice", "pw"), basicHeader("dörte", "x"), basicHeader("", "pw"), basicHeader("a b", "c:d"),
		"basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw")),
		"BASIC\t" + base64.StdEncoding.EncodeToString([]byte("alice:pw")),
		"Basic  " + base64.StdEncoding.EncodeToString([]byte("alice:pw")) + " ",
		"Basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:p")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon")),
		"Basic ====", "Bearer x", "Basic", "",
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", auth)
		logged := strings.TrimSuffix(string(l.Append(nil, &accesslog.Entry{Request: req, Start: time.Now()})), "\n")
		user, _, ok := parseBasicAuth(auth, nil)
		want := "-"
		if ok && len(user) > 0 {
			want = string(appendLogEscaped(nil, user))
		}
		if logged != want {
			t.Errorf("Authorization %q: access log user %q, basic_auth user %q", auth, logged, want)
		}
	}
}

func TestCatBasicAuthFileErrors(t *testing.T) {
	hs := testHashes()
	good := "alice:" + hs["s3cret"]
	cost18 := "x:$2y$18$" + hs["s3cret"][7:]
	tests := []struct {
		name  string
		lines []string
		line  int
		msg   string
	}{
		{"no colon", []string{"# c", good, "justaname"}, 3, "want user:hash"},
		{"empty user", []string{":" + hs["s3cret"]}, 1, "empty user name"},
		{"duplicate", []string{good, "", good}, 3, `user "alice" is already defined on line 1`},
		{"apr1", []string{good, "bob:$apr1$abc$defghijklmnopqrstuvwxy"}, 2, "Apache MD5"},
		{"sha", []string{"bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}, 1, "SHA-1"},
		{"sha512 crypt", []string{"bob:$6$salt$hash"}, 1, "crypt(3)"},
		{"plain text", []string{"bob:plainpw"}, 1, "not bcrypt"},
		{"truncated bcrypt", []string{"bob:" + hs["s3cret"][:40]}, 1, "malformed bcrypt hash"},
		{"bad cost", []string{"bob:$2y$xx$" + hs["s3cret"][7:]}, 1, "malformed bcrypt hash"},
		{"cost too high", []string{cost18}, 1, "bcrypt cost 18 is above 17"},
		{"control character", []string{"bo\x01b:" + hs["s3cret"]}, 1, "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeHtpasswd(t, tt.lines...)
			_, err := basicAuthFactory().Filter(catConfig(map[string]string{"htpasswd": file}))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *Error", err)
			}
			if e.Pos.File != file || e.Pos.Line != tt.line {
				t.Errorf("located at %v, want %s:%d", e.Pos, file, tt.line)
			}
			if !strings.Contains(e.Error(), tt.msg) {
				t.Errorf("message %q lacks %q", e.Error(), tt.msg)
			}
			if !strings.HasPrefix(e.Error(), file+":"+strconv.Itoa(tt.line)+": [test]: htpasswd: ") {
				t.Errorf("message %q does not start with the htpasswd file:line", e.Error())
			}
			for _, secret := range []string{hs["s3cret"][7:], "plainpw", "W6ph5Mm5", "defghijk", "$6$salt"} {
				if strings.Contains(e.Error(), secret) {
					t.Errorf("message quotes the hash or password: %q", e.Error())
				}
			}
		})
	}
	for name, opts := range map[string]map[string]string{
		"no htpasswd":  {},
		"missing file": {"htpasswd": filepath.Join(t.TempDir(), "nope")},
		"directory":    {"htpasswd": t.TempDir()},
		"authfunc":     {"htpasswd": writeHtpasswd(t, good), "authfunc": "myapp.auth:check"},
		"realm":        {"htpasswd": writeHtpasswd(t, good), "realm": "a\nb"},
		"cache_size":   {"htpasswd": writeHtpasswd(t, good), "cache_size": "-1"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := basicAuthFactory().Filter(catConfig(opts))
			wantConfigError(t, err)
		})
	}
}

// A relative path is relative to the config file; a rebuild (reload)
// reads the file again.
func TestCatBasicAuthReload(t *testing.T) {
	hs := testHashes()
	dir := t.TempDir()
	p := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(p, []byte("alice:"+hs["s3cret"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func() http.Handler {
		c := catConfig(map[string]string{"htpasswd": "htpasswd"})
		c.Global["here"] = dir
		mw, err := basicAuthFactory().Filter(c)
		if err != nil {
			t.Fatal(err)
		}
		return mw(userEcho)
	}
	status := func(h http.Handler, user, pass string) int {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", basicHeader(user, pass))
		return serve(h, req).Code
	}
	h1 := build()
	if status(h1, "alice", "s3cret") != 200 || status(h1, "bob", "hunter2") != 401 {
		t.Fatal("first file not applied")
	}
	if err := os.WriteFile(p, []byte("bob:"+hs["hunter2"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h2 := build()
	if status(h2, "alice", "s3cret") != 401 || status(h2, "bob", "hunter2") != 200 {
		t.Error("rebuilt filter does not use the new file")
	}
	// The old pipeline keeps its users (and its cache) until retired.
	if status(h1, "alice", "s3cret") != 200 {
		t.Error("old pipeline changed")
	}
}

// Unknown users are checked against the costliest hash of the file; a
// file without users still costs a bcrypt run.
func TestCatBasicAuthDummyHash(t *testing.T) {
	hs := testHashes()
	cost6, err := bcrypt.GenerateFromPassword([]byte("pw"), 6)
	if err != nil {
		t.Fatal(err)
	}
	file := writeHtpasswd(t, "a:"+hs["s3cret"], "b:"+string(cost6))
	a := buildBasicAuth(t, catConfig(map[string]string{"htpasswd": file}))
	if string(a.dummy) != string(cost6) {
		t.Errorf("dummy hash is %q, want the cost-6 one", a.dummy)
	}
	empty := buildBasicAuth(t, catConfig(map[string]string{"htpasswd": writeHtpasswd(t, "# nobody")}))
	if cost, err := bcrypt.Cost(empty.dummy); err != nil || cost != bcrypt.DefaultCost {
		t.Errorf("dummy of an empty file: cost %d, %v", cost, err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", basicHeader("anyone", "pw"))
	start := time.Now()
	if u := empty.authenticate(req); u != nil {
		t.Fatal("empty file let someone in")
	}
	// Cost 10 takes tens of milliseconds; a lookup miss alone, microseconds.
	if d := time.Since(start); d < 5*time.Millisecond {
		t.Errorf("unknown user rejected in %v: no bcrypt run", d)
	}
}

func buildBasicAuth(t *testing.T, c *Config) *basicAuth {
	t.Helper()
	a, err := parseBasicAuthFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCatBasicAuthCache(t *testing.T) {
	hs := testHashes()
	file := writeHtpasswd(t, "alice:"+hs["s3cret"])
	a := buildBasicAuth(t, catConfig(map[string]string{"htpasswd": file, "cache_size": "2"}))
	h := a.wrap(userEcho)
	for _, pw := range []string{"s3cret", "wrong"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", basicHeader("alice", pw))
		serve(h, req)
	}
	if !a.cache.has([]byte("alice"), []byte("s3cret")) {
		t.Error("success not cached")
	}
	if a.cache.has([]byte("alice"), []byte("wrong")) {
		t.Error("failure cached")
	}
	// Bounded: a third entry evicts one.
	a.cache.add([]byte("x"), []byte("1"))
	a.cache.add([]byte("y"), []byte("2"))
	if n := len(a.cache.seen); n != 2 {
		t.Errorf("cache holds %d entries, max 2", n)
	}
	// The digest separates user and password.
	if a.cache.digest([]byte("ab"), []byte("c")) == a.cache.digest([]byte("a"), []byte("bc")) {
		t.Error("digest ambiguous")
	}
	off := buildBasicAuth(t, catConfig(map[string]string{"htpasswd": file, "cache_size": "0"}))
	if off.cache != nil {
		t.Error("cache_size = 0 keeps a cache")
	}
}

func TestCatBasicAuthNoAllocsWhenCached(t *testing.T) {
	hs := testHashes()
	h := mustFilter(t, basicAuthFactory(), map[string]string{"htpasswd": writeHtpasswd(t, "alice:"+hs["s3cret"])})(okHandler)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", basicHeader("alice", "s3cret"))
	serve(h, req)
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	// One allocation: the request copy carrying RemoteUser.
	if n := allocsPerRequest(h, newNopWriter(), req); n > 1 {
		t.Errorf("cached credentials allocate %.1f times per request, want at most 1", n)
	}
}
