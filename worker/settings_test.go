package worker

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/listener"
	"paddock/pipeline"
)

// loadServer writes ini into a temp dir and loads its [server:main].
func loadServer(t *testing.T, ini string) *pipeline.ServerSpec {
	t.Helper()
	path := filepath.Join(t.TempDir(), "paste.ini")
	if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, _, err := LoadServer(path, "", nil)
	if err != nil {
		t.Fatalf("LoadServer: %v", err)
	}
	return srv
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

const serverINI = `[server:main]
use = egg:paddock#http
workers = 2
graceful_timeout = 10
keepalive = 5
bind = 127.0.0.1:9001
backlog = 64

[app:main]
use = egg:paddock#hello
`

func TestResolvePrecedence(t *testing.T) {
	srv := loadServer(t, serverINI)
	tests := []struct {
		name    string
		flags   map[string]string
		env     map[string]string
		server  *pipeline.ServerSpec
		setting string
		want    any
		source  Source
		where   string
	}{
		{name: "default", setting: "graceful_timeout", want: DefaultGracefulTimeout, source: SourceDefault},
		{name: "file", server: srv, setting: "graceful_timeout", want: 10 * time.Second, source: SourceFile, where: ":4"},
		{name: "env over file", server: srv, env: map[string]string{"PADDOCK_GRACEFUL_TIMEOUT": "20"},
			setting: "graceful_timeout", want: 20 * time.Second, source: SourceEnv, where: "PADDOCK_GRACEFUL_TIMEOUT"},
		{name: "flag over env", server: srv, env: map[string]string{"PADDOCK_GRACEFUL_TIMEOUT": "20"}, flags: map[string]string{"graceful_timeout": "1m"},
			setting: "graceful_timeout", want: time.Minute, source: SourceFlag, where: "--graceful-timeout"},
		{name: "flag over file", server: srv, flags: map[string]string{"workers": "0"}, setting: "workers", want: 0, source: SourceFlag},
		{name: "file workers", server: srv, setting: "workers", want: 2, source: SourceFile},
		{name: "workers default", setting: "workers", want: 1, source: SourceDefault},
		{name: "WEB_CONCURRENCY over default", env: map[string]string{"WEB_CONCURRENCY": "4"}, setting: "workers", want: 4, source: SourceEnv, where: "WEB_CONCURRENCY"},
		{name: "file over WEB_CONCURRENCY", server: srv, env: map[string]string{"WEB_CONCURRENCY": "4"}, setting: "workers", want: 2, source: SourceFile},
		{name: "PADDOCK_WORKERS over file", server: srv, env: map[string]string{"WEB_CONCURRENCY": "4", "PADDOCK_WORKERS": "3"}, setting: "workers", want: 3, source: SourceEnv},
		{name: "umask default keeps", setting: "umask", want: -1, source: SourceDefault},
		{name: "umask octal", env: map[string]string{"PADDOCK_UMASK": "022"}, setting: "umask", want: 0o22, source: SourceEnv},
		{name: "umask 0o", flags: map[string]string{"umask": "0o27"}, setting: "umask", want: 0o27, source: SourceFlag},
		{name: "max_requests", env: map[string]string{"PADDOCK_MAX_REQUESTS": "5"}, setting: "max_requests", want: 5, source: SourceEnv},
		{name: "keepalive file", server: srv, setting: "keepalive", want: 5 * time.Second, source: SourceFile},
		{name: "keepalive default", setting: "keepalive", want: DefaultKeepalive, source: SourceDefault},
		{name: "timeout default", setting: "timeout", want: DefaultTimeout, source: SourceDefault},
		{name: "limit line default", setting: "limit_request_line", want: DefaultLimitRequestLine, source: SourceDefault},
		{name: "limit fields default", setting: "limit_request_fields", want: DefaultLimitRequestFields, source: SourceDefault},
		{name: "limit fields 0 is gunicorn max", flags: map[string]string{"limit_request_fields": "0"}, setting: "limit_request_fields", want: 32768, source: SourceFlag},
		{name: "limit field size default", setting: "limit_request_field_size", want: DefaultLimitRequestFieldSize, source: SourceDefault},
		{name: "backlog default", setting: "backlog", want: DefaultBacklog, source: SourceDefault},
		{name: "backlog file", server: srv, setting: "backlog", want: 64, source: SourceFile},
		{name: "reuse_port env", env: map[string]string{"PADDOCK_REUSE_PORT": "yes"}, setting: "reuse_port", want: true, source: SourceEnv},
		{name: "loglevel second env name", env: map[string]string{"PADDOCK_LOGLEVEL": "warning"}, setting: "loglevel", want: hclog.Warn, source: SourceEnv},
		{name: "loglevel first env wins", env: map[string]string{"PADDOCK_LOGLEVEL": "warning", "PADDOCK_LOG_LEVEL": "debug"}, setting: "loglevel", want: hclog.Debug, source: SourceEnv},
		{name: "bind default", setting: "bind", want: "127.0.0.1:8000", source: SourceDefault},
		{name: "bind file", server: srv, setting: "bind", want: "127.0.0.1:9001", source: SourceFile},
		{name: "bind env", server: srv, env: map[string]string{"PADDOCK_BIND": "localhost:9002,unix:/tmp/x.sock 127.0.0.1:9002"},
			setting: "bind", want: "127.0.0.1:9002 unix:/tmp/x.sock", source: SourceEnv},
		{name: "bind flag", server: srv, flags: map[string]string{"bind": "[::1]:9003"}, setting: "bind", want: "[::1]:9003", source: SourceFlag},
		{name: "port flag over file bind", server: srv, flags: map[string]string{"port": "9004"}, setting: "bind", want: "127.0.0.1:9004", source: SourceFlag},
		{name: "host and port env", env: map[string]string{"PADDOCK_HOST": "0.0.0.0", "PADDOCK_PORT": "9005"}, setting: "bind", want: "0.0.0.0:9005", source: SourceEnv},
		{name: "env port under flag bind", flags: map[string]string{"bind": "127.0.0.1:9006"}, env: map[string]string{"PADDOCK_PORT": "9005"},
			setting: "bind", want: "127.0.0.1:9006", source: SourceFlag},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := Resolve(Input{Flags: tc.flags, LookupEnv: env(tc.env), Server: tc.server})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			var got any
			switch tc.setting {
			case "graceful_timeout":
				got = s.GracefulTimeout
			case "keepalive":
				got = s.Keepalive
			case "timeout":
				got = s.Timeout
			case "workers":
				got = s.Workers
			case "umask":
				got = s.Umask
			case "max_requests":
				got = s.MaxRequests
			case "limit_request_line":
				got = s.LimitRequestLine
			case "limit_request_fields":
				got = s.LimitRequestFields
			case "limit_request_field_size":
				got = s.LimitRequestFieldSize
			case "backlog":
				got = s.Backlog
			case "reuse_port":
				got = s.ReusePort
			case "loglevel":
				got = s.LogLevel
			case "bind":
				var parts []string
				for _, b := range s.Bind {
					parts = append(parts, b.String())
				}
				got = strings.Join(parts, " ")
			default:
				t.Fatalf("test does not know setting %q", tc.setting)
			}
			if got != tc.want {
				t.Errorf("%s = %v, want %v", tc.setting, got, tc.want)
			}
			o := s.Origins[tc.setting]
			if o.Source != tc.source {
				t.Errorf("%s source = %s, want %s", tc.setting, o.Source, tc.source)
			}
			if tc.where != "" && !strings.HasSuffix(o.Where, tc.where) {
				t.Errorf("%s where = %q, want suffix %q", tc.setting, o.Where, tc.where)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	badINI := `[server:main]
use = egg:paddock#http
workers = many
limit_request_line = 9000
bind = 8080

[app:main]
use = egg:paddock#hello
`
	tests := []struct {
		name     string
		ini      string
		flags    map[string]string
		env      map[string]string
		want     []string
		flagOnly bool
	}{
		{name: "file values name file:line", ini: badINI, want: []string{
			`paste.ini:3: [server:main]: workers: not an integer: "many"`,
			`paste.ini:4: [server:main]: limit_request_line: 9000 is out of range (0 to 8190)`,
			`paste.ini:5: [server:main]: bind: `,
		}},
		{name: "flag named", flags: map[string]string{"keepalive": "soon"}, want: []string{`--keepalive: not a duration`}, flagOnly: true},
		{name: "env named", env: map[string]string{"PADDOCK_BACKLOG": "0"}, want: []string{`PADDOCK_BACKLOG: 0 is out of range (1 to 1048576)`}},
		{name: "log level", flags: map[string]string{"loglevel": "loud"}, want: []string{`--log-level: unknown log level "loud"`}, flagOnly: true},
		{name: "empty bind", flags: map[string]string{"bind": " "}, want: []string{`--bind: no address`}, flagOnly: true},
		{name: "bad port", env: map[string]string{"PADDOCK_PORT": "http"}, want: []string{`PADDOCK_PORT: listener: bind "127.0.0.1:http"`}},
		{name: "bad proxy protocol", ini: "[server:main]\nuse = egg:paddock#http\nproxy_protocol = v3\n\n[app:main]\nuse = egg:paddock#hello\n",
			want: []string{`paste.ini:3: [server:main]: proxy_protocol: "v3" is not a PROXY protocol mode (off, v1, v2 or auto)`}},
		{name: "bad allow lists", ini: "[server:main]\nuse = egg:paddock#http\nproxy_allow_ips = 10.0.0.0/33\nforwarded_allow_ips = 127.0.0.1, localhost\n\n[app:main]\nuse = egg:paddock#hello\n",
			want: []string{`paste.ini:3: [server:main]: proxy_allow_ips: bad address or network "10.0.0.0/33"`, `paste.ini:4: [server:main]: forwarded_allow_ips: bad address or network "localhost"`}},
		{name: "forwarded allow ips from gunicorn's variable", env: map[string]string{"FORWARDED_ALLOW_IPS": "nope"}, want: []string{`FORWARDED_ALLOW_IPS: bad address or network "nope"`}},
		{name: "unknown protocol", flags: map[string]string{"protocols": "h1 h3"}, want: []string{`--protocols: h3 (HTTP/3 over QUIC) is not supported`}, flagOnly: true},
		{name: "h2 alone in clear", ini: "[server:main]\nuse = egg:paddock#http\nprotocols = h2\n\n[app:main]\nuse = egg:paddock#hello\n",
			want: []string{`paste.ini:3: [server:main]: protocols: h2 is HTTP/2 over TLS, and no certfile is set`}},
		{name: "h2c alone over TLS", env: map[string]string{"PADDOCK_PROTOCOLS": "h2c", "PADDOCK_CERTFILE": "c.pem", "PADDOCK_KEYFILE": "k.pem"},
			want: []string{`PADDOCK_PROTOCOLS: h2c is HTTP/2 in clear, and with certfile set every listener serves TLS`}},
		{name: "bad secure scheme headers", ini: "[server:main]\nuse = egg:paddock#http\nsecure_scheme_headers = X-Proto https, Bad Name: on\n\n[app:main]\nuse = egg:paddock#hello\n",
			want: []string{`paste.ini:3: [server:main]: secure_scheme_headers: "X-Proto https": want NAME: VALUE`, `"Bad Name" is not a header name`}},
		{name: "bad forwarded header", flags: map[string]string{"forwarded_header": "X Forwarded"}, want: []string{`--forwarded-header: "X Forwarded" is not a header name`}, flagOnly: true},
		{name: "bad umask", ini: "[server:main]\nuse = egg:paddock#http\numask = 0999\n\n[app:main]\nuse = egg:paddock#hello\n",
			want: []string{`paste.ini:3: [server:main]: umask: not a umask`}},
		{name: "bad max_requests", env: map[string]string{"PADDOCK_MAX_REQUESTS": "-1"}, want: []string{`PADDOCK_MAX_REQUESTS: -1 is out of range`}},
		{name: "unknown access log atom", ini: "[server:main]\nuse = egg:paddock#http\naccesslog = -\naccess_log_format = %%(h)s %%(x)s\n\n[app:main]\nuse = egg:paddock#hello\n",
			want: []string{`paste.ini:4: [server:main]: access_log_format: unknown atom %(x)s (known: h l u t r m U q H s B b f a T M D L p {NAME}i {NAME}o {NAME}e) (at byte 6 of "%(h)s %(x)s")`}},
		{name: "malformed access log format", env: map[string]string{"PADDOCK_ACCESS_LOG_FORMAT": "%(h)s 100%"},
			want: []string{`PADDOCK_ACCESS_LOG_FORMAT: a lone % at the end (write %% for a literal %)`}},
		{name: "access log format flag", flags: map[string]string{"access_log_format": "%(h)d"}, want: []string{`--access-log-format: %(h)d: only the s conversion is supported`}, flagOnly: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srv *pipeline.ServerSpec
			if tc.ini != "" {
				srv = loadServer(t, tc.ini)
			}
			_, _, err := Resolve(Input{Flags: tc.flags, LookupEnv: env(tc.env), Server: srv})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain %q", err, w)
				}
			}
			var se *SettingError
			if tc.flagOnly && (!errors.As(err, &se) || se.Origin.Source != SourceFlag) {
				t.Errorf("error %v is not a flag SettingError", err)
			}
		})
	}
}

func TestResolveWarnings(t *testing.T) {
	srv := loadServer(t, `[server:main]
use = egg:paddock#http
threads = 8
gunicorn_only = x
host = 0.0.0.0
bind = 127.0.0.1:9000
proxy_protocol = false

[app:main]
use = egg:paddock#hello
`)
	s, warnings, err := Resolve(Input{LookupEnv: env(nil), Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Bind; len(got) != 1 || got[0] != (listener.Spec{Network: listener.TCP, Addr: "127.0.0.1:9000"}) {
		t.Errorf("bind = %v, want 127.0.0.1:9000", got)
	}
	var lines []string
	for _, w := range warnings {
		lines = append(lines, w.Error())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		`paste.ini:3: [server:main]: unknown setting "threads"`,
		`paste.ini:4: [server:main]: unknown setting "gunicorn_only"`,
		`paste.ini:5: [server:main]: host and port are ignored: bind is set`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings\n%s\ndo not contain %q", got, want)
		}
	}
	if len(warnings) != 3 {
		t.Errorf("got %d warnings, want 3:\n%s", len(warnings), got)
	}
}

func TestLoadServerMissingSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "paste.ini")
	if err := os.WriteFile(path, []byte("[app:main]\nuse = egg:paddock#hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, _, err := LoadServer(path, "main", nil)
	if err != nil || srv != nil {
		t.Fatalf("LoadServer = %v, %v; want nil, nil", srv, err)
	}
	s, _, err := Resolve(Input{LookupEnv: env(nil), Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if s.Bind[0].String() != DefaultBind {
		t.Errorf("bind = %v, want the default", s.Bind)
	}
}

func TestLoadServerBrokenSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "paste.ini")
	if err := os.WriteFile(path, []byte("[server:main]\nuse = egg:nope#http\n\n[app:main]\nuse = egg:paddock#hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadServer(path, "main", nil)
	if err == nil || !strings.Contains(err.Error(), "paste.ini:2: [server:main]:") {
		t.Fatalf("LoadServer error = %v, want one at paste.ini:2", err)
	}
}

func TestParseLogLevel(t *testing.T) {
	tests := []struct {
		in   string
		want hclog.Level
		err  bool
	}{
		{"debug", hclog.Debug, false},
		{"INFO", hclog.Info, false},
		{"warning", hclog.Warn, false},
		{"warn", hclog.Warn, false},
		{"critical", hclog.Error, false},
		{"trace", hclog.Trace, false},
		{"bogus", hclog.NoLevel, true},
		{"", hclog.NoLevel, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLogLevel(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseLogLevel(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestResolveProtocolSettings(t *testing.T) {
	s, _, err := Resolve(Input{LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Protocols, " ") != "h1 h2" || s.ProxyProtocol != listener.ProxyOff ||
		s.ProxyAllowIPs.String() != "127.0.0.1/32,::1/128" || s.ForwardedAllowIPs.String() != "127.0.0.1/32,::1/128" ||
		s.ForwardedHeader != "X-Forwarded-For" || len(s.SecureSchemeHeaders) != 3 || s.SecureSchemeHeaders["X-Forwarded-Proto"] != "https" ||
		s.SecureSchemeHeaders["X-Forwarded-Protocol"] != "ssl" || s.SecureSchemeHeaders["X-Forwarded-Ssl"] != "on" {
		t.Errorf("defaults: %q %q %s %s %q %v", s.Protocols, s.ProxyProtocol, s.ProxyAllowIPs, s.ForwardedAllowIPs, s.ForwardedHeader, s.SecureSchemeHeaders)
	}

	srv := loadServer(t, `[server:main]
use = egg:paddock#http
protocols = H2C, h1 h1
proxy_protocol = true
proxy_allow_ips = 10.0.0.0/8
forwarded_header = forwarded
secure_scheme_headers = {'X-FORWARDED-PROTO': 'https', "X-Scheme": "secure"}

[app:main]
use = egg:paddock#hello
`)
	s, _, err = Resolve(Input{LookupEnv: env(map[string]string{"FORWARDED_ALLOW_IPS": "*"}), Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Protocols, " ") != "h1 h2c" || s.ProxyProtocol != listener.ProxyAuto || s.ProxyAllowIPs.String() != "10.0.0.0/8" ||
		!s.ForwardedAllowIPs.All() || s.Origins["forwarded_allow_ips"].Where != "FORWARDED_ALLOW_IPS" ||
		s.ForwardedHeader != "Forwarded" || len(s.SecureSchemeHeaders) != 2 || s.SecureSchemeHeaders["X-Scheme"] != "secure" {
		t.Errorf("file: %q %q %s %s %q %v", s.Protocols, s.ProxyProtocol, s.ProxyAllowIPs, s.ForwardedAllowIPs, s.ForwardedHeader, s.SecureSchemeHeaders)
	}
	// PADDOCK_FORWARDED_ALLOW_IPS wins over the file, the file over
	// gunicorn's FORWARDED_ALLOW_IPS.
	srv = loadServer(t, "[server:main]\nuse = egg:paddock#http\nforwarded_allow_ips = 10.1.0.0/16\nsecure_scheme_headers =\nproxy_protocol = off\n\n[app:main]\nuse = egg:paddock#hello\n")
	s, _, err = Resolve(Input{LookupEnv: env(map[string]string{"FORWARDED_ALLOW_IPS": "*"}), Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if s.ForwardedAllowIPs.String() != "10.1.0.0/16" || len(s.SecureSchemeHeaders) != 0 || s.ProxyProtocol != listener.ProxyOff {
		t.Errorf("file over FORWARDED_ALLOW_IPS: %s, secure %v, proxy %q", s.ForwardedAllowIPs, s.SecureSchemeHeaders, s.ProxyProtocol)
	}
	s, _, err = Resolve(Input{LookupEnv: env(map[string]string{"PADDOCK_FORWARDED_ALLOW_IPS": "192.0.2.0/24"}), Server: srv})
	if err != nil || s.ForwardedAllowIPs.String() != "192.0.2.0/24" {
		t.Errorf("env over file: %v %v", s, err)
	}

	// h2 alone is fine over TLS.
	s, _, err = Resolve(Input{LookupEnv: env(map[string]string{"PADDOCK_PROTOCOLS": "h2", "PADDOCK_CERTFILE": "c", "PADDOCK_KEYFILE": "k"})})
	if err != nil || strings.Join(s.Protocols, ",") != "h2" {
		t.Errorf("h2 over TLS: %v %v", s, err)
	}
}

// Every setting names the Settings field a reload compares and keeps it
// through, and the policies are the ones the manual and the reload code
// have always had: the master's own settings live, restart-only ones
// kept.
func TestSettingsReloadPolicy(t *testing.T) {
	want := map[string]ReloadPolicy{
		"workers": ReloadLive, "backlog": ReloadLive,
		"reuse_port": ReloadRestart, "control_socket": ReloadRestart, "watch_config": ReloadRestart,
		"upgrade_timeout": ReloadRestart, "errorlog": ReloadRestart, "metrics_bind": ReloadRestart,
		"pidfile": ReloadRestart, "user": ReloadRestart, "group": ReloadRestart,
	}
	for _, st := range Known() {
		if f := st.fieldOf(&Settings{}); !f.IsValid() || !f.CanSet() {
			t.Errorf("setting %s: no settable Settings field %q", st.Name, st.field)
		}
		if got := st.Reload; got != want[st.Name] {
			t.Errorf("setting %s: reload policy %d, want %d", st.Name, got, want[st.Name])
		}
		if st.ReloadText() == "" {
			t.Errorf("setting %s: no reload text for the manual", st.Name)
		}
	}
}

// A reload keeps the running value of a restart-only setting (and its
// origin) and names it; other changes go through.
func TestKeepRestartSettings(t *testing.T) {
	running := testSettings(t, map[string]string{"pidfile": "/run/a.pid", "timeout": "10"})
	ns := testSettings(t, map[string]string{"pidfile": "/run/b.pid", "timeout": "20", "reuse_port": "true"})
	kept := keepRestartSettings(running, ns)
	if want := []string{"reuse_port", "pidfile"}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	if ns.Pidfile != "/run/a.pid" || ns.ReusePort || ns.Origins["pidfile"] != running.Origins["pidfile"] {
		t.Errorf("restart-only settings not kept: pidfile %q (origin %+v), reuse_port %v", ns.Pidfile, ns.Origins["pidfile"], ns.ReusePort)
	}
	if ns.Timeout != 20*time.Second {
		t.Errorf("timeout %v, want the new 20s", ns.Timeout)
	}
	if sameProcessSettings(running, ns) {
		t.Error("a new timeout does not roll the workers")
	}
	ns.Timeout, ns.Workers, ns.Backlog = running.Timeout, running.Workers+3, running.Backlog+1
	if !sameProcessSettings(running, ns) {
		t.Error("workers and backlog, the master's own, roll the workers")
	}
}
