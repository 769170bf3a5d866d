package worker

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/accesslog"
	"paddock/forwarded"
	"paddock/listener"
	"paddock/pipeline"
)

// Source says which layer a setting's value came from. Precedence, highest
// first: SourceFlag, SourceEnv, SourceFile, SourceDefault (paddock(8), ENVIRONMENT).
type Source string

// The layers a setting can come from.
const (
	SourceDefault Source = "default"
	SourceFile    Source = "file"
	SourceEnv     Source = "env"
	SourceFlag    Source = "flag"
)

func (s Source) rank() int {
	switch s {
	case SourceFlag:
		return 3
	case SourceEnv:
		return 2
	case SourceFile:
		return 1
	}
	return 0
}

// Origin is where a setting's value came from.
type Origin struct {
	Source Source
	// Where names the place: "--workers", "PADDOCK_WORKERS",
	// "paste.ini:12"; empty for a default.
	Where string
	// Value is the text as written (the default's text for a default).
	Value string
}

// Settings are the server settings paddock acts on now, under gunicorn's
// names. Resolve fills every field; the zero value is not meaningful.
type Settings struct {
	// Bind is the deduplicated list of sockets to serve on.
	Bind []listener.Spec
	// Workers is the number of worker processes the master keeps (default
	// 1, or WEB_CONCURRENCY when the file does not say); 0 makes the
	// master serve in-process.
	Workers int
	// Timeout is gunicorn's worker timeout: a worker silent for this long
	// (no heartbeat) is killed and replaced. It also bounds how long a
	// client may take to send a request's headers
	// (http.Server.ReadHeaderTimeout); 0 disables both.
	Timeout time.Duration
	// GracefulTimeout bounds a graceful stop: in-flight requests get this
	// long to finish before their connections are closed.
	GracefulTimeout time.Duration
	// UpgradeTimeout bounds a binary upgrade: a new master not ready
	// within it is killed and the old one keeps serving (tableflip's
	// Options.UpgradeTimeout; 0 means its default, a minute).
	UpgradeTimeout time.Duration
	// Keepalive is how long an idle keep-alive connection is kept open
	// (http.Server.IdleTimeout); 0 turns keep-alive off.
	Keepalive time.Duration
	// ClientBodyTimeout bounds each read of a request body: a client
	// that sends no byte of it for this long is cut (nginx's
	// client_body_timeout; 0: no limit). See clients.go.
	ClientBodyTimeout time.Duration
	// SendTimeout bounds each write of a response: a client that takes no
	// byte of it for this long is cut (nginx's send_timeout; 0: no
	// limit).
	SendTimeout time.Duration
	// WorkerConnections is the most client connections a worker holds
	// open; past it the worker stops accepting (0: no limit).
	WorkerConnections int
	// LimitRequestLine is the longest request line accepted (0: no limit
	// beyond the header total).
	LimitRequestLine int
	// LimitRequestFields is the most header fields a request may have.
	LimitRequestFields int
	// LimitRequestFieldSize is the longest header field, name and value
	// (0: no limit beyond the header total).
	LimitRequestFieldSize int
	// StrictHTTP refuses HTTP/1 requests whose framing is ambiguous (bare
	// LF, obs-fold, Content-Length with Transfer-Encoding, ...) with a 400
	// before net/http parses them (strict_http; package httpguard).
	StrictHTTP bool
	// Backlog is the listen queue length.
	Backlog int
	// ReusePort sets SO_REUSEPORT on tcp listeners.
	ReusePort bool
	// CertFile and KeyFile turn on TLS on every listener (HTTP/2 offered
	// through ALPN); both or neither.
	CertFile string
	KeyFile  string
	// Protocols are the HTTP versions served (protocols), a subset of
	// h1, h2 (HTTP/2 over TLS, through ALPN) and h2c (HTTP/2 in clear,
	// prior knowledge), in that order. h2 applies to TLS listeners and h2c
	// to clear ones; Resolve checks the set leaves something to serve.
	// Empty means net/http's default (HTTP/1.1, and HTTP/2 over TLS).
	Protocols []string `json:",omitempty"`
	// ProxyProtocol says whether connections start with a PROXY protocol
	// header (proxy_protocol: off, v1, v2, auto); ProxyAllowIPs are the
	// peers whose header is used (proxy_allow_ips; unix-socket peers
	// always are).
	ProxyProtocol listener.ProxyMode `json:",omitempty"`
	ProxyAllowIPs forwarded.Networks
	// ForwardedAllowIPs are the peers whose forwarding headers are
	// believed (forwarded_allow_ips; unix-socket peers always are);
	// ForwardedHeader is the header that lists the hops
	// (forwarded_header); SecureSchemeHeaders map a header to the value
	// that means https (secure_scheme_headers). See package forwarded.
	ForwardedAllowIPs   forwarded.Networks
	ForwardedHeader     string            `json:",omitempty"`
	SecureSchemeHeaders map[string]string `json:",omitempty"`
	// Pidfile is written with the serving process's pid; "" writes none.
	Pidfile string
	// ControlSocket is the control socket's path as set (flag, env or
	// file); "" lets control.SocketPath pick the default
	// ($RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR, next to the pidfile).
	ControlSocket string
	// MaxRequests retires a worker after this many requests (plus a random
	// 0..MaxRequestsJitter picked per worker); 0 never does.
	MaxRequests       int
	MaxRequestsJitter int
	// User and Group are who the workers run as ("" keeps the master's);
	// a name or a number. Setting them needs root.
	User  string
	Group string
	// Umask is applied by each worker before it serves; -1 (the default,
	// "" in the file) keeps the inherited one.
	Umask int
	// DebugWorkerHeader adds X-Paddock-Worker: <pid> to every response
	// (for tests and debugging; off by default).
	DebugWorkerHeader bool
	// AccessLog is where workers write one line per request: "" (the
	// default) nowhere, "-" stdout, else a file (logs.go).
	AccessLog string
	// AccessLogFormat is the access_log_format as written (validated by
	// Resolve; "" is Apache combined): gunicorn's %(x)s atoms or a preset
	// (common, combined, json).
	AccessLogFormat string
	// ErrorLog is where the master's and the workers' logs go: "-" (the
	// default) stderr, else a file the master writes (logs.go).
	ErrorLog string
	// MetricsBind, if set, is a socket where the master serves the whole
	// server's Prometheus metrics at /metrics (metrics_bind).
	MetricsBind *listener.Spec `json:",omitempty"`
	// LogLevel is the level of the root logger.
	LogLevel hclog.Level
	// WatchConfig makes the master reload when the config or a file it
	// reads changes (default true; workers >= 1 only). Changing it needs
	// a restart.
	WatchConfig bool

	// Origins maps each setting name to where its value came from.
	Origins map[string]Origin
}

// Setting describes one server setting: its gunicorn name, the flags and
// environment variables that set it, and its default.
type Setting struct {
	// Name is the gunicorn name, as written in [server:main].
	Name string
	// Flags are the command-line flag names; the first is the main one
	// (the name with - for _).
	Flags []string
	// Envs are the environment variables, first set wins
	// (PADDOCK_<NAME>).
	Envs []string
	// Default is the default value as text.
	Default string
	// Usage is the one-line help, with a backticked placeholder.
	Usage string
	// List marks a setting given several times (bind).
	List bool
	// Bool marks a switch: its flag may be given without a value.
	Bool bool
	// FallbackEnvs are read below the file, above the default
	// (WEB_CONCURRENCY for workers, as gunicorn does).
	FallbackEnvs []string
	// Reload is what a reload does with a changed value; the reload code
	// (Arbiter.reload), the manual and the docs all read it here.
	Reload ReloadPolicy
	// ReloadDoc is what the manual says a reload does with the setting,
	// when the policy's own sentence (ReloadPolicy.Doc) is not enough.
	ReloadDoc string

	// field is the Settings field the setting sets: a reload compares
	// and keeps values through it.
	field string
	parse func(s *Settings, v string) error
}

// ReloadPolicy is what a reload does with a changed setting.
type ReloadPolicy int

const (
	// ReloadRoll: the workers are started with the setting; a change
	// rolls them, each new worker serving before an old one drains.
	ReloadRoll ReloadPolicy = iota
	// ReloadLive: the master applies the change to what runs (the worker
	// count, the sockets' backlog); the workers are not rolled for it.
	ReloadLive
	// ReloadRestart: read once, when the master starts; a reload keeps
	// the running value and names the setting "(needs restart)".
	ReloadRestart
)

// Doc is the manual's sentence for the policy.
func (p ReloadPolicy) Doc() string {
	switch p {
	case ReloadLive:
		return "applied live"
	case ReloadRestart:
		return "needs a restart or an upgrade: the running value is kept and the reload answer names the setting \"(needs restart)\""
	}
	return "rolls the workers: each new worker serves before an old one drains"
}

// ReloadText is what the manual says a reload does with the setting.
func (st Setting) ReloadText() string {
	if st.ReloadDoc != "" {
		return st.ReloadDoc
	}
	return st.Reload.Doc()
}

// fieldOf is the value of st's Settings field in s.
func (st Setting) fieldOf(s *Settings) reflect.Value {
	return reflect.ValueOf(s).Elem().FieldByName(st.field)
}

// Defaults of the settings that have one (gunicorn's).
const (
	DefaultBind                  = "127.0.0.1:8000"
	DefaultTimeout               = 30 * time.Second
	DefaultGracefulTimeout       = 30 * time.Second
	DefaultKeepalive             = 2 * time.Second
	DefaultLimitRequestLine      = 4094
	DefaultLimitRequestFields    = 100
	DefaultLimitRequestFieldSize = 8190
	DefaultBacklog               = 2048
	// DefaultWorkerConnections is gunicorn's worker_connections.
	DefaultWorkerConnections = 1000

	// DefaultProtocols: HTTP/1.x everywhere, HTTP/2 over TLS.
	DefaultProtocols = "h1 h2"
	// DefaultAllowIPs is gunicorn's default of proxy_allow_ips and
	// forwarded_allow_ips.
	DefaultAllowIPs = "127.0.0.1,::1"
	// DefaultSecureSchemeHeaders is gunicorn's secure_scheme_headers.
	DefaultSecureSchemeHeaders = "X-FORWARDED-PROTOCOL: ssl, X-FORWARDED-PROTO: https, X-FORWARDED-SSL: on"

	// maxRequestLine and maxRequestFields are gunicorn's upper bounds.
	maxRequestLine   = 8190
	maxRequestFields = 32768
)

func setting(name, def, usage string, parse func(*Settings, string) error) Setting {
	return Setting{
		Name:    name,
		Flags:   []string{strings.ReplaceAll(name, "_", "-")},
		Envs:    []string{"PADDOCK_" + strings.ToUpper(name)},
		Default: def,
		Usage:   usage,
		field:   fieldName(name),
		parse:   parse,
	}
}

// fieldName is the Settings field of a setting: its name in CamelCase,
// with the exceptions below.
func fieldName(name string) string {
	switch name {
	case "host", "port":
		return "Bind"
	case "loglevel":
		return "LogLevel"
	case "debug_worker_header":
		return "DebugWorkerHeader"
	case "certfile":
		return "CertFile"
	case "keyfile":
		return "KeyFile"
	case "pidfile":
		return "Pidfile"
	case "accesslog":
		return "AccessLog"
	case "errorlog":
		return "ErrorLog"
	case "forwarded_allow_ips":
		return "ForwardedAllowIPs"
	case "proxy_allow_ips":
		return "ProxyAllowIPs"
	case "strict_http":
		return "StrictHTTP"
	}
	var b strings.Builder
	for _, part := range strings.Split(name, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// reloading sets what a reload does with st (policy, and the manual's
// text when the policy's sentence is not enough).
func reloading(st Setting, policy ReloadPolicy, doc string) Setting {
	st.Reload, st.ReloadDoc = policy, doc
	return st
}

// What the manual says a reload does with the settings that share a
// text beyond their policy's sentence.
const (
	reloadBind = "applied live: added sockets are opened first (one that cannot be opened fails the reload and changes nothing), " +
		"the workers roll onto the new set, and a removed socket stops listening once no old worker is left " +
		"(named again before that, it keeps the same socket)"
	tlsReloadDoc = "rolls the workers: each new worker serves before an old one drains; new content in the files under the same names is loaded in place by every reload, without new workers " +
		"(the master loads the pair first: one that does not load fails the reload and the workers keep serving the old certificate)"
	credentialsReloadDoc = "needs a restart or an upgrade: workers are started with the user and group the master resolved when it started"
)

// table is every setting paddock implements or accepts, in help order.
var table = func() []Setting {
	bind := setting("bind", DefaultBind, "serve on `ADDR`: host:port, [::1]:port, :port, unix:/path or fd://N (repeatable; in the file and env space-separated)",
		func(s *Settings, v string) error {
			items := pipeline.SplitList(v)
			if len(items) == 0 {
				return errors.New("no address")
			}
			specs, err := listener.ParseList(items)
			if err != nil {
				return err
			}
			s.Bind = specs
			return nil
		})
	bind.List = true
	bind.Flags = append(bind.Flags, "b")
	bind.ReloadDoc = reloadBind
	loglevel := setting("loglevel", "info", "log `LEVEL`: trace, debug, info, warning, error",
		func(s *Settings, v string) error {
			l, err := ParseLogLevel(v)
			s.LogLevel = l
			return err
		})
	// --log-level is the spelling the rest of the CLI uses; --loglevel is
	// gunicorn's.
	loglevel.Flags = []string{"log-level", "loglevel"}
	loglevel.Envs = []string{"PADDOCK_LOG_LEVEL", "PADDOCK_LOGLEVEL"}
	loglevel.ReloadDoc = ReloadRoll.Doc() + "; the master keeps its own level until a restart"
	reusePort := setting("reuse_port", "false", "set SO_REUSEPORT on tcp sockets",
		func(s *Settings, v string) error {
			b, err := pipeline.ParseBool(v)
			s.ReusePort = b
			return err
		})
	reusePort.Bool = true
	reusePort.Reload = ReloadRestart
	workers := setting("workers", "1", "worker processes (`N`); 0 serves in the master process; WEB_CONCURRENCY applies when the file does not set it",
		intIn(0, 1<<16, func(s *Settings, n int) { s.Workers = n }))
	workers.Flags = append(workers.Flags, "w")
	workers.FallbackEnvs = []string{"WEB_CONCURRENCY"}
	workers.Reload = ReloadLive
	workers.ReloadDoc = "applied live: workers are started or stopped (the oldest first, gracefully) to the new count; a count changed at run time (TTIN, TTOU, ctl workers) survives edits that leave workers alone; 0 needs a restart"
	debugHeader := setting("debug_worker_header", "false", "add X-Paddock-Worker: <pid> to every response",
		func(s *Settings, v string) error {
			b, err := pipeline.ParseBool(v)
			s.DebugWorkerHeader = b
			return err
		})
	debugHeader.Bool = true
	watchConfig := setting("watch_config", "true", "reload when the config file or a file it reads changes (workers >= 1; HUP and ctl reload work either way)",
		func(s *Settings, v string) error {
			b, err := pipeline.ParseBool(v)
			s.WatchConfig = b
			return err
		})
	watchConfig.Bool = true
	watchConfig.Reload = ReloadRestart
	strictHTTP := setting("strict_http", "true", "answer 400 (and close) to an HTTP/1 request a front proxy could read differently, before the app sees it: a line not ending in CRLF, obs-fold, a bad field name, a bad or conflicting Content-Length, Content-Length with Transfer-Encoding, chunked not last or twice, Transfer-Encoding in HTTP/1.0, * or authority-form targets outside OPTIONS and CONNECT, Content-Type twice, bad chunk framing, framing or routing fields in trailers; false leaves all parsing to Go's net/http",
		func(s *Settings, v string) error {
			b, err := pipeline.ParseBool(v)
			s.StrictHTTP = b
			return err
		})
	strictHTTP.Bool = true
	// --ctl-socket is the documented spelling (ctl's own flag is
	// --socket); --control-socket is the name with - for _.
	controlSocket := setting("control_socket", "", "serve the control socket (paddock ctl) at `PATH`; default $RUNTIME_DIRECTORY/ctl.sock, else $XDG_RUNTIME_DIR/paddock/ctl.sock, else next to the pidfile; a socket file deleted while the master runs is created again on USR1 and on every reload",
		func(s *Settings, v string) error { s.ControlSocket = strings.TrimSpace(v); return nil })
	controlSocket.Flags = []string{"ctl-socket", "control-socket"}
	controlSocket.Envs = []string{"PADDOCK_CTL_SOCKET", "PADDOCK_CONTROL_SOCKET"}
	controlSocket.Reload = ReloadRestart
	forwardedAllow := setting("forwarded_allow_ips", DefaultAllowIPs, "peers (`LIST` of IPs and CIDRs; * for every peer) whose forwarding headers (X-Forwarded-For, Forwarded, the secure scheme headers) are believed; from other peers they are removed; unix-socket peers are always trusted",
		networks(func(s *Settings, n forwarded.Networks) { s.ForwardedAllowIPs = n }))
	// gunicorn reads FORWARDED_ALLOW_IPS as the default.
	forwardedAllow.FallbackEnvs = []string{"FORWARDED_ALLOW_IPS"}
	return []Setting{
		bind,
		reloading(setting("host", listener.PasteHost, "Paste-style `HOST` to serve on when bind is not set", nil), ReloadRoll, reloadBind),
		reloading(setting("port", strconv.Itoa(listener.PastePort), "Paste-style `PORT` to serve on when bind is not set", nil), ReloadRoll, reloadBind),
		workers,
		setting("timeout", "30", "`SECONDS` a worker may stay silent before it is killed and replaced (also the time a client has to send request headers, and the longest a worker whose master died keeps draining); 0 for no limit",
			duration(func(s *Settings, d time.Duration) { s.Timeout = d })),
		setting("graceful_timeout", "30", "`SECONDS` in-flight requests get to finish on a graceful stop (TERM)",
			duration(func(s *Settings, d time.Duration) { s.GracefulTimeout = d })),
		reloading(setting("upgrade_timeout", "60", "`SECONDS` a new binary gets to become ready on an upgrade (USR2, ctl upgrade) before it is killed and the old master keeps serving",
			duration(func(s *Settings, d time.Duration) { s.UpgradeTimeout = d })), ReloadRestart, ""),
		setting("keepalive", "2", "`SECONDS` an idle keep-alive connection stays open; 0 turns keep-alive off",
			duration(func(s *Settings, d time.Duration) { s.Keepalive = d })),
		setting("client_body_timeout", "60", "`SECONDS` a client may pause while sending a request body: each read of it waits at most this long, so a slow but steady upload is not cut (nginx's client_body_timeout); 0 for no limit",
			duration(func(s *Settings, d time.Duration) { s.ClientBodyTimeout = d })),
		setting("send_timeout", "60", "`SECONDS` a client may pause while reading a response: each write waits at most this long for the client to take a byte, so a slow but steady download is not cut (nginx's send_timeout); 0 for no limit",
			duration(func(s *Settings, d time.Duration) { s.SendTimeout = d })),
		setting("worker_connections", strconv.Itoa(DefaultWorkerConnections), "most client connections a worker holds open (`N`); past it the worker stops accepting and new connections wait in the listen queue (backlog) for a free slot or another worker; 0 for no limit; each needs a file descriptor (the hard RLIMIT_NOFILE, systemd's LimitNOFILE)",
			intIn(0, 1<<24, func(s *Settings, n int) { s.WorkerConnections = n })),
		setting("limit_request_line", strconv.Itoa(DefaultLimitRequestLine), "longest request line in `BYTES` (0 to 8190; 0: no own limit)",
			intIn(0, maxRequestLine, func(s *Settings, n int) { s.LimitRequestLine = n })),
		setting("limit_request_fields", strconv.Itoa(DefaultLimitRequestFields), "most header fields in a request (`N`, up to 32768; 0: 32768)",
			intIn(0, maxRequestFields, func(s *Settings, n int) {
				if n == 0 {
					n = maxRequestFields
				}
				s.LimitRequestFields = n
			})),
		setting("limit_request_field_size", strconv.Itoa(DefaultLimitRequestFieldSize), "longest header field line in `BYTES`, with its CRLF as gunicorn counts it (0: no own limit)",
			intIn(0, 1<<20, func(s *Settings, n int) { s.LimitRequestFieldSize = n })),
		strictHTTP,
		reloading(setting("backlog", strconv.Itoa(DefaultBacklog), "listen queue length (`N`; the kernel caps it at net.core.somaxconn)",
			intIn(1, 1<<20, func(s *Settings, n int) { s.Backlog = n })), ReloadLive, "applied live to the open sockets"),
		reusePort,
		reloading(setting("certfile", "", "serve TLS (HTTP/2 and HTTP/1.1) with the certificate chain in `FILE` (PEM; needs keyfile)",
			func(s *Settings, v string) error { s.CertFile = strings.TrimSpace(v); return nil }), ReloadRoll, tlsReloadDoc),
		reloading(setting("keyfile", "", "the private key (PEM) of certfile, in `FILE`",
			func(s *Settings, v string) error { s.KeyFile = strings.TrimSpace(v); return nil }), ReloadRoll, tlsReloadDoc),
		setting("protocols", DefaultProtocols, "HTTP versions to serve (`LIST`, space- or comma-separated): h1 (HTTP/1.x), h2 (HTTP/2 over TLS, negotiated through ALPN), h2c (HTTP/2 in clear, prior knowledge only: no Upgrade: h2c); h2 applies to TLS listeners, h2c to clear ones",
			parseProtocols),
		reloading(setting("proxy_protocol", string(listener.ProxyOff), "read a PROXY protocol header (HAProxy's) at the start of each connection (`MODE`): off; v1 or v2 (required from proxy_allow_ips peers, of that version); auto (either version, optional); a header from another peer is dropped and its own address kept",
			func(s *Settings, v string) error {
				m, err := listener.ParseProxyMode(v)
				s.ProxyProtocol = m
				return err
			}), ReloadRoll, ReloadRoll.Doc()+"; connections already open keep the addresses read when they were accepted"),
		reloading(setting("proxy_allow_ips", DefaultAllowIPs, "peers (`LIST` of IPs and CIDRs; * for every peer) whose PROXY protocol header is used; unix-socket peers always are",
			networks(func(s *Settings, n forwarded.Networks) { s.ProxyAllowIPs = n })), ReloadRoll, ReloadRoll.Doc()+"; connections already open keep the addresses read when they were accepted"),
		forwardedAllow,
		setting("forwarded_header", forwarded.DefaultHeader, "the header (`NAME`) a trusted proxy lists the hops in: X-Forwarded-For, Forwarded (RFC 7239), or another in X-Forwarded-For syntax (X-Real-IP, CF-Connecting-IP); only this one is read for the client address",
			parseForwardedHeader),
		setting("secure_scheme_headers", DefaultSecureSchemeHeaders, "headers that tell a trusted proxy's request was https (`LIST` of NAME: VALUE, comma-separated; any other value of them means http, and contradicting ones are answered 400); empty: none",
			parseSecureSchemeHeaders),
		reloading(setting("pidfile", "", "write the server's pid to `FILE`",
			func(s *Settings, v string) error { s.Pidfile = strings.TrimSpace(v); return nil }), ReloadRestart, "needs a restart or an upgrade: the running master keeps the pidfile it wrote"),
		controlSocket,
		setting("max_requests", "0", "retire a worker after `N` requests; 0 never",
			intIn(0, 1<<30, func(s *Settings, n int) { s.MaxRequests = n })),
		setting("max_requests_jitter", "0", "add a random 0..`N` to max_requests per worker",
			intIn(0, 1<<30, func(s *Settings, n int) { s.MaxRequestsJitter = n })),
		reloading(setting("user", "", "run workers as `USER` (name or uid; needs root)",
			func(s *Settings, v string) error { s.User = strings.TrimSpace(v); return nil }), ReloadRestart, credentialsReloadDoc),
		reloading(setting("group", "", "run workers as `GROUP` (name or gid; needs root)",
			func(s *Settings, v string) error { s.Group = strings.TrimSpace(v); return nil }), ReloadRestart, credentialsReloadDoc),
		setting("umask", "", "`MASK` for files the workers create (0o22, 022, 0x12); unset keeps the inherited one",
			parseUmask),
		setting("accesslog", "", "write an access log line per request to `FILE` (- for stdout); unset: no access log; requests never wait for it: lines the disk cannot take (full, slow) are dropped and counted in the error log, at once and then at most every 10 s",
			func(s *Settings, v string) error { s.AccessLog = strings.TrimSpace(v); return nil }),
		setting("access_log_format", "", "access log line `FORMAT`: gunicorn's atoms, %(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\" (the default, combined), or common, combined, json; in the INI file write %% for each %",
			func(s *Settings, v string) error {
				if _, err := accesslog.Parse(v); err != nil {
					return err
				}
				s.AccessLogFormat = v
				return nil
			}),
		reloading(setting("errorlog", "-", "write the log of the master and the workers to `FILE` (- for stderr)",
			func(s *Settings, v string) error { s.ErrorLog = strings.TrimSpace(v); return nil }), ReloadRestart, ""),
		reloading(setting("metrics_bind", "", "serve the whole server's Prometheus metrics at /metrics on `ADDRESS` (a bind: host:port, unix:/path, ...), from the master; unset: off (mount the metrics app with urlmap instead)",
			func(s *Settings, v string) error {
				s.MetricsBind = nil
				if v = strings.TrimSpace(v); v == "" {
					return nil
				}
				spec, err := listener.Parse(v)
				if err != nil {
					return err
				}
				s.MetricsBind = &spec
				return nil
			}), ReloadRestart, ""),
		loglevel,
		debugHeader,
		watchConfig,
	}
}()

// parseUmask reads gunicorn's umask: a number in Go syntax (0o22, 022,
// 0x12, 18); empty keeps the inherited umask.
func parseUmask(s *Settings, v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		s.Umask = -1
		return nil
	}
	n, err := strconv.ParseInt(v, 0, 32)
	if err != nil || n < 0 || n > 0o777 {
		return fmt.Errorf("not a umask (0 to 0o777): %q", v)
	}
	s.Umask = int(n)
	return nil
}

// Settings that real gunicorn/Paste configs carry and paddock knows but
// does not implement yet. Refused ones would silently weaken the service if
// ignored (plain HTTP instead of TLS, root instead of a service user);
// the others are warned about and ignored. None at the moment.
var (
	refused = map[string]string{}
	notYet  = []string{}
)

// Known returns the settings Resolve reads from flags and the environment,
// in help order.
func Known() []Setting { return slices.Clone(table) }

// ParseLogLevel parses a log level: hclog's names (trace, debug, info,
// warn, error, off) and gunicorn's (warning, critical).
func ParseLogLevel(v string) (hclog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "warning":
		return hclog.Warn, nil
	case "critical":
		return hclog.Error, nil
	}
	l := hclog.LevelFromString(v)
	if l == hclog.NoLevel {
		return hclog.NoLevel, fmt.Errorf("unknown log level %q (want trace, debug, info, warning, error or critical)", v)
	}
	return l, nil
}

func intIn(lo, hi int, set func(*Settings, int)) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d is out of range (%d to %d)", n, lo, hi)
		}
		set(s, n)
		return nil
	}
}

func duration(set func(*Settings, time.Duration)) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		d, err := pipeline.ParseDuration(v)
		if err != nil {
			return err
		}
		set(s, d)
		return nil
	}
}

// Input is what Resolve layers.
type Input struct {
	// Flags are the values given on the command line, by setting name; a
	// list setting's values joined by spaces. Only flags the user typed
	// belong here: a value that came from the environment must be left to
	// LookupEnv so its origin is reported right.
	Flags map[string]string
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Server is the [server:NAME] section; nil when the config has none.
	Server *pipeline.ServerSpec
}

// SettingError is a bad value from a flag or an environment variable.
// Bad values in the file are *pipeline.Error, located at file:line.
type SettingError struct {
	Setting string
	Origin  Origin
	Err     error
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s: %v", e.Origin.Where, e.Err)
}

func (e *SettingError) Unwrap() error { return e.Err }

// Resolve computes the settings from the layers in in: flag > environment
// > [server:NAME] > default. Warnings name file:line: settings of other
// servers (waitress threads, gunicorn worker_class...) that paddock
// ignores, and known settings not implemented yet. The error joins every
// bad value: *pipeline.Error for the file, *SettingError for flags and
// the environment.
func Resolve(in Input) (*Settings, []*pipeline.Error, error) {
	lookupEnv := in.LookupEnv
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	s := &Settings{Origins: make(map[string]Origin, len(table))}
	var (
		warnings []*pipeline.Error
		errs     []error
	)
	fileErr := func(key, format string, args ...any) *pipeline.Error {
		return &pipeline.Error{Pos: in.Server.PosOf(key), Section: in.Server.Section, Class: "ValueError", Msg: key + ": " + fmt.Sprintf(format, args...)}
	}

	for _, st := range table {
		origin := pick(st, in, lookupEnv)
		s.Origins[st.Name] = origin
		if st.parse == nil {
			continue // host and port are folded into bind below
		}
		if err := st.parse(s, origin.Value); err != nil {
			if origin.Source == SourceFile {
				e := fileErr(st.Name, "%v", err)
				e.Err = err
				errs = append(errs, e)
			} else {
				errs = append(errs, &SettingError{Setting: st.Name, Origin: origin, Err: err})
			}
		}
	}
	if err := resolveHostPort(s, in, &warnings); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := checkProtocols(s); err != nil {
			o := s.Origins["protocols"]
			if o.Source == SourceFile {
				e := fileErr("protocols", "%v", err)
				e.Err = err
				errs = append(errs, e)
			} else {
				errs = append(errs, &SettingError{Setting: "protocols", Origin: o, Err: err})
			}
		}
	}

	if in.Server != nil {
		known := make(map[string]bool, len(table))
		for _, st := range table {
			known[st.Name] = true
		}
		for _, key := range slices.Sorted(maps.Keys(in.Server.Settings)) {
			switch {
			case known[key]:
			case refused[key] != "":
				if strings.TrimSpace(in.Server.Settings[key]) == "" || isFalse(in.Server.Settings[key]) {
					continue
				}
				errs = append(errs, fileErr(key, "%s", refused[key]))
			case slices.Contains(notYet, key):
				warnings = append(warnings, warning(in.Server, key, fmt.Sprintf("setting %q is not implemented yet; ignored", key)))
			default:
				warnings = append(warnings, warning(in.Server, key, fmt.Sprintf("unknown setting %q (not a paddock setting; another server's option?); ignored", key)))
			}
		}
	}
	slices.SortStableFunc(warnings, func(a, b *pipeline.Error) int { return a.Pos.Line - b.Pos.Line })
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return s, warnings, nil
}

func isFalse(v string) bool {
	b, err := pipeline.ParseBool(v)
	return err == nil && !b
}

func warning(srv *pipeline.ServerSpec, key, msg string) *pipeline.Error {
	return &pipeline.Error{Pos: srv.PosOf(key), Section: srv.Section, Class: "Warning", Msg: msg}
}

// pick returns the highest-precedence value of st.
func pick(st Setting, in Input, lookupEnv func(string) (string, bool)) Origin {
	if v, ok := in.Flags[st.Name]; ok {
		return Origin{Source: SourceFlag, Where: "--" + st.Flags[0], Value: v}
	}
	for _, env := range st.Envs {
		if v, ok := lookupEnv(env); ok {
			return Origin{Source: SourceEnv, Where: env, Value: v}
		}
	}
	if in.Server != nil {
		if v, ok := in.Server.Settings[st.Name]; ok {
			return Origin{Source: SourceFile, Where: in.Server.PosOf(st.Name).String(), Value: v}
		}
	}
	for _, env := range st.FallbackEnvs {
		if v, ok := lookupEnv(env); ok && strings.TrimSpace(v) != "" {
			return Origin{Source: SourceEnv, Where: env, Value: v}
		}
	}
	return Origin{Source: SourceDefault, Value: st.Default}
}

// resolveHostPort applies Paste's host + port: they replace bind when set
// at a higher precedence than bind (bind = in the file, --port on the
// command line: the flag wins), and are ignored with a warning when a bind
// of the same or higher precedence exists.
func resolveHostPort(s *Settings, in Input, warnings *[]*pipeline.Error) error {
	bind, host, port := s.Origins["bind"], s.Origins["host"], s.Origins["port"]
	hp := max(host.Source.rank(), port.Source.rank())
	if hp == 0 {
		return nil
	}
	if hp <= bind.Source.rank() {
		if in.Server != nil && (host.Source == SourceFile || port.Source == SourceFile) {
			key := "host"
			if host.Source != SourceFile {
				key = "port"
			}
			*warnings = append(*warnings, warning(in.Server, key, "host and port are ignored: bind is set"))
		}
		return nil
	}
	hostV, portV := host.Value, port.Value
	if host.Source == SourceDefault {
		hostV = ""
	}
	if port.Source == SourceDefault {
		portV = ""
	}
	spec, err := listener.FromHostPort(hostV, portV)
	if err != nil {
		o := port
		name := "port"
		if port.Source.rank() < host.Source.rank() {
			o, name = host, "host"
		}
		if o.Source == SourceFile {
			return &pipeline.Error{Pos: in.Server.PosOf(name), Section: in.Server.Section, Class: "ValueError", Msg: fmt.Sprintf("%s: %v", name, err), Err: err}
		}
		return &SettingError{Setting: name, Origin: o, Err: err}
	}
	s.Bind = []listener.Spec{spec}
	src := host
	if port.Source.rank() > host.Source.rank() {
		src = port
	}
	s.Origins["bind"] = Origin{Source: src.Source, Where: src.Where, Value: spec.String()}
	return nil
}

// LoadServer loads the [server:NAME] section of the config at path ("" is
// main). A config without that section is not an error: it returns nil
// and the settings come from flags, the environment and the defaults.
// Errors are *pipeline.Error or pipeline.ErrorList, located at file:line.
func LoadServer(path, name string, reg *pipeline.Registry) (*pipeline.ServerSpec, []*pipeline.Error, error) {
	return LoadServerFrom(path, name, reg, nil)
}

// LoadServerFrom is LoadServer over files, config file contents by the
// names the load uses (pipeline.LoadOptions.Files): a reload reads its
// settings from the bytes it validated the pipeline from.
func LoadServerFrom(path, name string, reg *pipeline.Registry, files map[string][]byte) (*pipeline.ServerSpec, []*pipeline.Error, error) {
	if name == "" {
		name = "main"
	}
	p, err := pipeline.Load(pipeline.LoadOptions{Path: path, Name: name, Kind: pipeline.ObjectServer, Registry: reg, Files: files})
	if err != nil {
		var pe *pipeline.Error
		// Only the top-level lookup counts: a use = config:... inside the
		// section naming a missing section is a real error (it has a
		// section).
		if errors.As(err, &pe) && pe.Class == "LookupError" && pe.Section == "" &&
			strings.HasPrefix(pe.Msg, "No section") && strings.Contains(pe.Msg, "(prefixed by 'server')") {
			return nil, nil, nil
		}
		return nil, nil, formatHint(err)
	}
	defer p.Close()
	spec, ok := p.Server.(*pipeline.ServerSpec)
	if !ok {
		return nil, p.Warnings, &pipeline.Error{Pos: pipeline.Pos{File: path}, Section: "server:" + name, Class: "TypeError",
			Msg: fmt.Sprintf("the server factory returned a %T, not paddock's server settings", p.Server)}
	}
	return spec, p.Warnings, nil
}

// formatHint adds what to do to the interpolation error an unescaped
// access_log_format gets: the INI file interpolates %(name)s itself
// (PasteDeploy's ConfigParser, as with gunicorn --paste), so the file
// must say %%(h)s.
func formatHint(err error) error {
	var pe *pipeline.Error
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "option 'access_log_format'") || !strings.Contains(pe.Msg, "interpolation") {
		return err
	}
	hinted := *pe
	hinted.Msg += " (the INI file interpolates %(name)s itself: write each % of access_log_format as %%, e.g. %%(h)s)"
	return &hinted
}

// ApplyActivation reads systemd's socket activation (LISTEN_FDS) once and,
// when no bind, host or port was set anywhere (flag, environment, file),
// serves on the activated sockets instead of the default bind. It reports
// whether it did. Reading it even when unused takes the descriptors out
// of the environment and marks them close-on-exec, so workers never
// inherit them by accident.
func ApplyActivation(s *Settings) (bool, error) {
	specs, err := listener.ActivatedSpecs()
	if err != nil {
		return false, fmt.Errorf("worker: systemd socket activation: %w", err)
	}
	if len(specs) == 0 {
		return false, nil
	}
	for _, name := range []string{"bind", "host", "port"} {
		if o, ok := s.Origins[name]; ok && o.Source != SourceDefault {
			return false, nil
		}
	}
	s.Bind = specs
	texts := make([]string, len(specs))
	for i, sp := range specs {
		texts[i] = sp.String()
	}
	s.Origins["bind"] = Origin{Source: SourceEnv, Where: "LISTEN_FDS", Value: strings.Join(texts, " ")}
	return true, nil
}
