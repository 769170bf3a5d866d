package listener

import (
	"errors"
	"fmt"
	"testing"
)

// FuzzParseSpec: Parse and FromHostPort never panic; every error wraps
// ErrBadSpec; a spec that parses is one of the four networks, contains no
// control character (it is logged and passed to workers in their
// environment), and survives a String/Parse round trip unchanged, since
// the master hands workers their binds as Spec.String().
func FuzzParseSpec(f *testing.F) {
	for _, s := range [][2]string{
		{"127.0.0.1:8000", "8080"}, {"[::1]:8080", "80"}, {":80", ""}, {"*:80", "65535"},
		{"localhost", "0"}, {"example.org", "x"}, {"tcp://0.0.0.0:9", "9"}, {"[fe80::1%eth0]:1", ""},
		{"unix:/run/app.sock", ""}, {"unix:///run/app.sock", ""}, {"unix:@abstract", ""}, {"unix:", ""},
		{"fd://3", ""}, {"fd://-1", ""}, {"systemd:web", ""}, {"systemd:a:b", ""},
		{"1.2.3.4:99999", "99999"}, {"::1:80", ""}, {"tcp://systemd:80", "80"}, {"unix:/a /.", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, bind, port string) {
		s, err := Parse(bind)
		checkSpec(t, fmt.Sprintf("Parse(%q)", bind), s, err)
		s, err = FromHostPort(bind, port)
		checkSpec(t, fmt.Sprintf("FromHostPort(%q, %q)", bind, port), s, err)
		if err == nil && s.Network != TCP {
			t.Fatalf("FromHostPort(%q, %q) = %+v, want a tcp spec", bind, port, s)
		}
	})
}

func checkSpec(t *testing.T, what string, s Spec, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrBadSpec) {
			t.Fatalf("%s: error %v does not wrap ErrBadSpec", what, err)
		}
		return
	}
	switch s.Network {
	case TCP, Unix, FD, Systemd:
	default:
		t.Fatalf("%s = %+v: unknown network", what, s)
	}
	if s.Addr == "" && s.Network != TCP {
		t.Fatalf("%s = %+v: empty address", what, s)
	}
	for i := 0; i < len(s.Addr); i++ {
		if c := s.Addr[i]; c < ' ' || c == 0x7f {
			t.Fatalf("%s = %+v: control character %q in the address", what, s, c)
		}
	}
	again, err := Parse(s.String())
	if err != nil {
		t.Fatalf("%s = %+v: its String %q does not parse: %v", what, s, s.String(), err)
	}
	if again != s || again.Key() != s.Key() {
		t.Fatalf("%s = %+v: String %q parses back as %+v", what, s, s.String(), again)
	}
}
