package forwarded

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseForwarded(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []Element
		err    string
	}{
		{name: "rfc 7239 example", values: []string{`for="_gazonk"`}, want: []Element{{For: "_gazonk"}}},
		{name: "case-insensitive names, ipv6 quoted", values: []string{`For="[2001:db8:cafe::17]:4711"`}, want: []Element{{For: "[2001:db8:cafe::17]:4711"}}},
		{name: "pairs", values: []string{`for=192.0.2.60;proto=http;by=203.0.113.43`}, want: []Element{{For: "192.0.2.60", Proto: "http", By: "203.0.113.43"}}},
		{name: "list", values: []string{`for=192.0.2.43, for=198.51.100.17`}, want: []Element{{For: "192.0.2.43"}, {For: "198.51.100.17"}}},
		{name: "several lines join in order", values: []string{`for=192.0.2.43`, `for="[2001:db8::1]";proto=https`}, want: []Element{{For: "192.0.2.43"}, {For: "[2001:db8::1]", Proto: "https"}}},
		{name: "quoted comma and semicolon", values: []string{`for="a,b;c";host="example.com:8080", for=unknown`}, want: []Element{{For: "a,b;c", Host: "example.com:8080"}, {For: "unknown"}}},
		{name: "quoted pair", values: []string{`for="\"_x\\y\""`}, want: []Element{{For: `"_x\y"`}}},
		{name: "white space around separators", values: []string{` for = 1.2.3.4 ; proto = https ,  , for=5.6.7.8 `}, want: []Element{{For: "1.2.3.4", Proto: "https"}, {For: "5.6.7.8"}}},
		{name: "empty pairs and items", values: []string{`,for=1.2.3.4;;proto=http,`}, want: []Element{{For: "1.2.3.4", Proto: "http"}}},
		{name: "extension ignored", values: []string{`for=1.2.3.4;secret="x y";proto=https`}, want: []Element{{For: "1.2.3.4", Proto: "https"}}},
		{name: "empty header", values: []string{``}, want: nil},
		{name: "unquoted ipv6 is not a token", values: []string{`for=[2001:db8::1]`}, err: "want a token or a quoted string"},
		{name: "unterminated quote", values: []string{`for="1.2.3.4`}, err: "unterminated quoted string"},
		{name: "duplicate parameter", values: []string{`for=1.2.3.4;FOR=5.6.7.8`}, err: `parameter "for" given twice`},
		{name: "no value", values: []string{`for=`}, err: "want a value"},
		{name: "no equals", values: []string{`for`}, err: `want = after "for"`},
		{name: "bare word", values: []string{`1.2.3.4`}, err: `want = after "1.2.3.4"`},
		{name: "control byte in quotes", values: []string{"for=\"a\x01b\""}, err: "byte 0x01 in a quoted string"},
		{name: "bad escape", values: []string{"for=\"a\\\x01\""}, err: "bad escape"},
		{name: "garbage after value", values: []string{`for=1.2.3.4 x`}, err: "want ; or , after a parameter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseForwarded(tc.values)
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrSyntax with %q (got %+v)", err, tc.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseNode(t *testing.T) {
	tests := []struct {
		in, remote string // remote "" means not an IP
	}{
		{"192.0.2.43", "192.0.2.43:0"},
		{" 192.0.2.43 ", "192.0.2.43:0"},
		{"192.0.2.43:47011", "192.0.2.43:47011"},
		{"[2001:db8:cafe::17]", "[2001:db8:cafe::17]:0"},
		{"[2001:db8:cafe::17]:4711", "[2001:db8:cafe::17]:4711"},
		{"[::1]:8080", "[::1]:8080"},
		{"2001:db8::1", "[2001:db8::1]:0"}, // X-Forwarded-For writes v6 bare
		{"::ffff:192.0.2.1", "192.0.2.1:0"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1:80"},
		{"fe80::1%eth0", "[fe80::1]:0"},
		{"192.0.2.43:_hidden", "192.0.2.43:0"}, // obfuscated port
		{"[2001:db8::1]:_p", "[2001:db8::1]:0"},
		{"192.0.2.43:99999", "192.0.2.43:0"},
		{"192.0.2.43:-1", "192.0.2.43:0"},
		{"unknown", ""},
		{"UNKNOWN", ""},
		{"_hidden", ""},
		{"_SEVKISEK", ""},
		{"", ""},
		{"example.com", ""},
		{"2001:db8::1:80", "[2001:db8::1:80]:0"}, // bare v6: all of it is the address
		{"[2001:db8::1", ""},
		{"[192.0.2.1]:80", ""},
		{"[2001:db8::1]x", ""},
		{"1.2.3.4.5", ""},
		{"300.1.1.1", ""},
	}
	for _, tc := range tests {
		n := ParseNode(tc.in)
		got := ""
		if n.IsIP() {
			got = n.RemoteAddr()
		}
		if got != tc.remote {
			t.Errorf("ParseNode(%q) = %q, want %q", tc.in, got, tc.remote)
		}
	}
}

func TestNetworks(t *testing.T) {
	n, err := ParseNetworks("127.0.0.1, ::1", "10.0.0.0/8 [fd00::1]", "::ffff:192.168.0.0/112")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "::ffff:127.0.0.1": true, "127.0.0.2": false, "::1": true, "::2": false,
		"10.1.2.3": true, "11.0.0.1": false, "fd00::1": true, "192.168.3.4": true, "192.169.0.1": false,
	} {
		if got := n.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	if got, want := n.String(), "127.0.0.1/32,::1/128,10.0.0.0/8,fd00::1/128,192.168.0.0/16"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	for remote, want := range map[string]bool{"127.0.0.1:5000": true, "[::1]:80": true, "8.8.8.8:1": false, "@": true, "": true} {
		if got := n.TrustsRemote(remote); got != want {
			t.Errorf("TrustsRemote(%q) = %v, want %v", remote, got, want)
		}
	}
	if !n.TrustsAddr(&net.UnixAddr{Name: "@", Net: "unix"}) || n.TrustsAddr(&net.TCPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 1}) ||
		!n.TrustsAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}) {
		t.Error("TrustsAddr: unix must be trusted, 8.8.8.8 not, 127.0.0.1 yes")
	}
	all := MustNetworks("*")
	if !all.All() || !all.Contains(netip.MustParseAddr("203.0.113.9")) || all.String() != "*" {
		t.Errorf("* = %v", all)
	}
	var none Networks
	if none.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("the zero Networks trusts 127.0.0.1")
	}

	// JSON round trip, as Settings travel to the workers.
	b, err := json.Marshal(struct{ N Networks }{n})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ N Networks }
	if err := json.Unmarshal(b, &back); err != nil || !back.N.Equal(n) || !reflect.DeepEqual(back.N, n) {
		t.Errorf("round trip %s: %v %v", b, back.N, err)
	}

	_, err = ParseNetworks("10.0.0.0/33, nope, 1.2.3.4")
	if err == nil || !errors.Is(err, ErrBadNetwork) || !strings.Contains(err.Error(), `"10.0.0.0/33"`) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("bad items: %v", err)
	}
}

// seen records what the wrapped handler got.
type seen struct {
	remote, peer, scheme string
	header               http.Header
	called               bool
}

func serve(t *testing.T, c Config, r *http.Request) (*httptest.ResponseRecorder, seen) {
	t.Helper()
	var s seen
	h := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s = seen{remote: r.RemoteAddr, peer: Peer(r), scheme: r.URL.Scheme, header: r.Header, called: true}
	}), c)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec, s
}

func TestHandler(t *testing.T) {
	loopback := MustNetworks("127.0.0.1", "::1")
	proxies := MustNetworks("127.0.0.1", "::1", "10.0.0.0/8")
	type want struct {
		status       int
		remote, peer string
		scheme       string
		kept         []string // headers still there
		gone         []string // headers stripped
	}
	tests := []struct {
		name    string
		config  Config
		remote  string
		target  string
		tls     bool
		headers map[string][]string
		want    want
	}{
		{name: "direct client, nothing to do", config: Config{Trusted: loopback}, remote: "203.0.113.9:5000",
			want: want{remote: "203.0.113.9:5000", peer: "203.0.113.9:5000"}},
		{name: "forged X-Forwarded-For from an untrusted peer is stripped", config: Config{Trusted: loopback}, remote: "203.0.113.9:5000",
			headers: map[string][]string{"X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"for=1.2.3.4"}, "X-Real-Ip": {"1.2.3.4"}, "X-Forwarded-Ssl": {"on"}, "X-Other": {"x"}},
			want:    want{remote: "203.0.113.9:5000", peer: "203.0.113.9:5000", gone: []string{"X-Forwarded-For", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip", "X-Forwarded-Ssl"}, kept: []string{"X-Other"}}},
		{name: "absolute-form https in clear from an untrusted peer", config: Config{Trusted: loopback}, remote: "203.0.113.9:5000", target: "https://example.com/x",
			want: want{remote: "203.0.113.9:5000", peer: "203.0.113.9:5000", scheme: "http"}},
		{name: "trusted proxy: client from X-Forwarded-For", config: Config{Trusted: loopback}, remote: "127.0.0.1:40000",
			headers: map[string][]string{"X-Forwarded-For": {"203.0.113.9"}},
			want:    want{remote: "203.0.113.9:0", peer: "127.0.0.1:40000", kept: []string{"X-Forwarded-For"}}},
		{name: "right-most untrusted hop", config: Config{Trusted: proxies}, remote: "10.0.0.2:1",
			headers: map[string][]string{"X-Forwarded-For": {"6.6.6.6, 203.0.113.9", "10.0.0.1"}},
			want:    want{remote: "203.0.113.9:0", peer: "10.0.0.2:1"}},
		{name: "all hops trusted: the left-most", config: Config{Trusted: proxies}, remote: "10.0.0.2:1",
			headers: map[string][]string{"X-Forwarded-For": {"10.9.9.9, 10.0.0.1"}},
			want:    want{remote: "10.9.9.9:0", peer: "10.0.0.2:1"}},
		{name: "garbage hop ends the walk at the nearest trusted one", config: Config{Trusted: proxies}, remote: "10.0.0.2:1",
			headers: map[string][]string{"X-Forwarded-For": {"203.0.113.9, nonsense, 10.0.0.1"}},
			want:    want{remote: "10.0.0.1:0", peer: "10.0.0.2:1"}},
		{name: "garbage right next to the peer keeps the peer", config: Config{Trusted: proxies}, remote: "10.0.0.2:1",
			headers: map[string][]string{"X-Forwarded-For": {"203.0.113.9, <script>"}},
			want:    want{remote: "10.0.0.2:1", peer: "10.0.0.2:1"}},
		{name: "ipv6 hop with port", config: Config{Trusted: loopback}, remote: "[::1]:9000",
			headers: map[string][]string{"X-Forwarded-For": {"[2001:db8::5]:4711"}},
			want:    want{remote: "[2001:db8::5]:4711", peer: "[::1]:9000"}},
		{name: "bare ipv6 hop", config: Config{Trusted: loopback}, remote: "[::1]:9000",
			headers: map[string][]string{"X-Forwarded-For": {"2001:db8::5"}},
			want:    want{remote: "[2001:db8::5]:0", peer: "[::1]:9000"}},
		{name: "unix socket peer is trusted", config: Config{SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "@",
			headers: map[string][]string{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Proto": {"https"}},
			want:    want{remote: "203.0.113.9:0", peer: "@", scheme: "https"}},
		{name: "trust all", config: Config{Trusted: MustNetworks("*")}, remote: "198.51.100.1:1",
			headers: map[string][]string{"X-Forwarded-For": {"203.0.113.9, 198.51.100.7"}},
			want:    want{remote: "203.0.113.9:0", peer: "198.51.100.1:1"}},
		{name: "X-Real-IP as the header", config: Config{Trusted: loopback, Header: "x-real-ip"}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Real-Ip": {"203.0.113.9"}, "X-Forwarded-For": {"6.6.6.6"}},
			want:    want{remote: "203.0.113.9:0", peer: "127.0.0.1:1"}},
		{name: "Forwarded not read unless configured", config: Config{Trusted: loopback}, remote: "127.0.0.1:1",
			headers: map[string][]string{"Forwarded": {"for=203.0.113.9;proto=https"}},
			want:    want{remote: "127.0.0.1:1", peer: "127.0.0.1:1", kept: []string{"Forwarded"}}},

		// secure_scheme_headers, gunicorn's defaults
		{name: "X-Forwarded-Proto https", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Forwarded-Proto": {"https"}}, want: want{remote: "127.0.0.1:1", peer: "127.0.0.1:1", scheme: "https"}},
		{name: "X-Forwarded-Ssl on, case-insensitive value", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Forwarded-Ssl": {"ON"}}, want: want{remote: "127.0.0.1:1", peer: "127.0.0.1:1", scheme: "https"}},
		{name: "X-Forwarded-Proto http", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Forwarded-Proto": {"http"}}, want: want{remote: "127.0.0.1:1", peer: "127.0.0.1:1"}},
		{name: "agreeing headers", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Protocol": {"ssl"}}, want: want{remote: "127.0.0.1:1", peer: "127.0.0.1:1", scheme: "https"}},
		{name: "contradicting headers are a 400", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Ssl": {"off"}}, want: want{status: 400}},
		{name: "contradicting lines of one header are a 400", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Forwarded-Proto": {"https", "http"}}, want: want{status: 400}},
		{name: "scheme headers of an untrusted peer are stripped, never a 400", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "203.0.113.9:1",
			headers: map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Ssl": {"off"}}, want: want{remote: "203.0.113.9:1", peer: "203.0.113.9:1", gone: []string{"X-Forwarded-Proto", "X-Forwarded-Ssl"}}},
		{name: "custom secure header stripped from untrusted", config: Config{Trusted: loopback, SecureSchemeHeaders: map[string]string{"x-scheme-is": "secure"}}, remote: "203.0.113.9:1",
			headers: map[string][]string{"X-Scheme-Is": {"secure"}}, want: want{remote: "203.0.113.9:1", peer: "203.0.113.9:1", gone: []string{"X-Scheme-Is"}}},
		{name: "TLS connection stays https whatever the header", config: Config{Trusted: loopback, SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1", tls: true,
			headers: map[string][]string{"X-Forwarded-Proto": {"http"}}, want: want{remote: "127.0.0.1:1", peer: "127.0.0.1:1"}},

		// Forwarded (RFC 7239) as the header
		{name: "Forwarded: client and proto", config: Config{Trusted: loopback, Header: "Forwarded"}, remote: "127.0.0.1:1",
			headers: map[string][]string{"Forwarded": {`for="[2001:db8:cafe::17]:4711";proto=https;host=example.com`}},
			want:    want{remote: "[2001:db8:cafe::17]:4711", peer: "127.0.0.1:1", scheme: "https"}},
		{name: "Forwarded: proto of the client's element, not the forged left one", config: Config{Trusted: proxies, Header: "Forwarded"}, remote: "10.0.0.2:1",
			headers: map[string][]string{"Forwarded": {`for=6.6.6.6;proto=https, for=203.0.113.9;proto=http, for=10.0.0.1;proto=https`}},
			want:    want{remote: "203.0.113.9:0", peer: "10.0.0.2:1"}},
		{name: "Forwarded: obfuscated client keeps the nearest trusted hop", config: Config{Trusted: proxies, Header: "Forwarded"}, remote: "10.0.0.2:1",
			headers: map[string][]string{"Forwarded": {`for=_hidden;proto=https, for=10.0.0.1`}},
			want:    want{remote: "10.0.0.1:0", peer: "10.0.0.2:1", scheme: "https"}},
		{name: "Forwarded: unknown", config: Config{Trusted: loopback, Header: "Forwarded"}, remote: "127.0.0.1:1",
			headers: map[string][]string{"Forwarded": {`for=unknown`}},
			want:    want{remote: "127.0.0.1:1", peer: "127.0.0.1:1"}},
		{name: "Forwarded: malformed header is not believed", config: Config{Trusted: loopback, Header: "Forwarded"}, remote: "127.0.0.1:1",
			headers: map[string][]string{"Forwarded": {`for="203.0.113.9;proto=https`}},
			want:    want{remote: "127.0.0.1:1", peer: "127.0.0.1:1"}},
		{name: "Forwarded proto contradicting X-Forwarded-Proto is a 400", config: Config{Trusted: loopback, Header: "Forwarded", SecureSchemeHeaders: DefaultSecureSchemeHeaders}, remote: "127.0.0.1:1",
			headers: map[string][]string{"Forwarded": {`for=203.0.113.9;proto=http`}, "X-Forwarded-Proto": {"https"}}, want: want{status: 400}},
		{name: "Forwarded: X-Forwarded-For ignored", config: Config{Trusted: loopback, Header: "Forwarded"}, remote: "127.0.0.1:1",
			headers: map[string][]string{"X-Forwarded-For": {"6.6.6.6"}},
			want:    want{remote: "127.0.0.1:1", peer: "127.0.0.1:1", kept: []string{"X-Forwarded-For"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "/path?q=1"
			}
			r := httptest.NewRequest("GET", target, nil)
			r.RemoteAddr = tc.remote
			r.TLS = nil
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, vs := range tc.headers {
				r.Header[http.CanonicalHeaderKey(k)] = vs
			}
			before := r.Header.Clone()
			rec, s := serve(t, tc.config, r)
			if tc.want.status != 0 {
				if rec.Code != tc.want.status || s.called {
					t.Fatalf("status %d (handler called %v), want %d", rec.Code, s.called, tc.want.status)
				}
				return
			}
			if !s.called {
				t.Fatalf("handler not called: %d %s", rec.Code, rec.Body)
			}
			if s.remote != tc.want.remote || s.peer != tc.want.peer || s.scheme != tc.want.scheme {
				t.Errorf("remote %q peer %q scheme %q, want %q %q %q", s.remote, s.peer, s.scheme, tc.want.remote, tc.want.peer, tc.want.scheme)
			}
			for _, k := range tc.want.gone {
				if _, ok := s.header[k]; ok {
					t.Errorf("%s reached the handler", k)
				}
			}
			for _, k := range tc.want.kept {
				if _, ok := s.header[k]; !ok {
					t.Errorf("%s was removed", k)
				}
			}
			if !reflect.DeepEqual(r.Header, before) {
				t.Errorf("the original request's header changed: %v", r.Header)
			}
		})
	}
}

// A request that needs nothing passes as it is, without allocating.
func TestHandlerPassThroughDoesNotAllocate(t *testing.T) {
	var got *http.Request
	h := New(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r }),
		Config{Trusted: MustNetworks("127.0.0.1"), SecureSchemeHeaders: DefaultSecureSchemeHeaders})
	for _, remote := range []string{"203.0.113.9:1", "127.0.0.1:1"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("User-Agent", "x")
		allocs := testing.AllocsPerRun(100, func() { h.ServeHTTP(nil, r) })
		if got != r || allocs != 0 {
			t.Errorf("%s: same request %v, %v allocations", remote, got == r, allocs)
		}
	}
}

func BenchmarkHandlerTrustedXFF(b *testing.B) {
	h := New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		Config{Trusted: MustNetworks("127.0.0.1", "10.0.0.0/8"), SecureSchemeHeaders: DefaultSecureSchemeHeaders})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:4000"
	r.Header.Set("X-Forwarded-For", "203.0.113.9, 10.0.0.1")
	r.Header.Set("X-Forwarded-Proto", "https")
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(nil, r)
	}
}

func FuzzForwarded(f *testing.F) {
	for _, s := range []string{`for=1.2.3.4`, `for="[::1]:80";proto=https, for=_x`, `for="a\"b"`, `,,;`, `for=`} {
		f.Add(s, "1.2.3.4, [::1]:80, unknown")
	}
	h := New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Config{Trusted: MustNetworks("*"), Header: "Forwarded", SecureSchemeHeaders: DefaultSecureSchemeHeaders})
	h2 := New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Config{Trusted: MustNetworks("*")})
	f.Fuzz(func(t *testing.T, fwd, xff string) {
		els, err := ParseForwarded([]string{fwd})
		if err == nil {
			for _, e := range els {
				ParseNode(e.For)
			}
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Forwarded"] = []string{fwd}
		r.Header["X-Forwarded-For"] = []string{xff}
		h.ServeHTTP(httptest.NewRecorder(), r)
		h2.ServeHTTP(httptest.NewRecorder(), r)
	})
}
