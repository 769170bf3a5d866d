package control

import (
	"context"
	"errors"
	"time"
)

// Controller is what the control socket drives: the master. control/
// defines it and worker/ implements it (control never imports worker).
// Every method is safe to call from any goroutine and honours ctx.
type Controller interface {
	// Status is GET /v1/status.
	Status(ctx context.Context) (Status, error)
	// Workers is GET /v1/workers.
	Workers(ctx context.Context) ([]Worker, error)
	// AddWorkers and RemoveWorkers change the target by n (> 0); the
	// oldest workers go first, gracefully. They return the target before
	// and after.
	AddWorkers(ctx context.Context, n int) (previous, target int, err error)
	RemoveWorkers(ctx context.Context, n int) (previous, target int, err error)
	// SetTarget sets the number of workers (>= 1).
	SetTarget(ctx context.Context, n int) (previous, target int, err error)
	// KillWorker stops the worker with pid: gracefully, or with SIGKILL
	// when force is set. The master replaces it. ErrNoSuchWorker when no
	// worker has that pid.
	KillWorker(ctx context.Context, pid int, force bool) error
	// Reload re-reads the config and applies it (HUP). A config error is
	// returned as an error carrying ConfigProblems (422).
	Reload(ctx context.Context) (ReloadResult, error)
	// CheckConfig validates a config file without applying it; path ""
	// means the running config.
	CheckConfig(ctx context.Context, path string) (CheckResult, error)
	// Upgrade replaces the binary (USR2). ErrBusy while one runs,
	// ErrNotImplemented until the upgrade work lands.
	Upgrade(ctx context.Context) (UpgradeResult, error)
	// Stop stops the master: graceful drains within grace (0: the
	// configured graceful_timeout); immediate closes everything.
	Stop(ctx context.Context, graceful bool, grace time.Duration) error
	// Config is the effective settings with the source of each.
	Config(ctx context.Context) (ConfigView, error)
	// ConfigFile is the raw config file the master runs.
	ConfigFile(ctx context.Context) ([]byte, error)
	// Pipeline is the composed graph of the running config in format
	// "json", "text" or "dot".
	Pipeline(ctx context.Context, format string) ([]byte, error)
	// ReopenLogs reopens log files in master and workers (USR1).
	ReopenLogs(ctx context.Context) error
	// Listeners is GET /v1/listeners.
	Listeners(ctx context.Context) ([]Listener, error)
	// Upstreams is GET /v1/upstreams: the proxy apps' upstreams as each
	// ready worker sees them.
	Upstreams(ctx context.Context) (UpstreamsResponse, error)
}

// Errors a Controller returns that map to particular statuses.
var (
	ErrNoSuchWorker   = errors.New("no such worker")        // 404
	ErrBusy           = errors.New("operation in progress") // 409
	ErrNotImplemented = errors.New("not implemented")       // 501
	ErrBadRequest     = errors.New("bad request")           // 400
)

// ConfigError is a config that does not load: 422 with its problems.
type ConfigError struct {
	Problems []ConfigProblem
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 0 {
		return "invalid config"
	}
	msg := e.Problems[0].Message
	if e.Problems[0].File != "" {
		msg = e.Problems[0].File + ": " + msg
	}
	if len(e.Problems) > 1 {
		msg += " (and more)"
	}
	return "invalid config: " + msg
}

// ConfigProblem is one located config error.
type ConfigProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Section string `json:"section,omitempty"`
	Message string `json:"message"`
}

// Status is GET /v1/status.
type Status struct {
	Pid        int            `json:"pid"`
	Version    string         `json:"version"`
	State      string         `json:"state"`
	UptimeS    float64        `json:"uptime_s"`
	Generation int            `json:"generation"`
	Config     ConfigRef      `json:"config"`
	Workers    WorkerCounts   `json:"workers"`
	Listeners  []Listener     `json:"listeners"`
	LastReload *ReloadOutcome `json:"last_reload"`
}

// ConfigRef names the running config.
type ConfigRef struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// WorkerCounts are the workers by state.
type WorkerCounts struct {
	Target   int `json:"target"`
	Ready    int `json:"ready"`
	Booting  int `json:"booting"`
	Draining int `json:"draining"`
}

// ReloadOutcome is the last reload's result.
type ReloadOutcome struct {
	OK    bool      `json:"ok"`
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// Worker is one worker in GET /v1/workers.
type Worker struct {
	ID             int       `json:"id"`
	Pid            int       `json:"pid"`
	Generation     int       `json:"generation"`
	State          string    `json:"state"`
	StartedAt      time.Time `json:"started_at"`
	Requests       uint64    `json:"requests"`
	InFlight       int64     `json:"in_flight"`
	RSSBytes       int64     `json:"rss_bytes"`
	LastHeartbeatS float64   `json:"last_heartbeat_s"`
}

// ReloadResult is POST /v1/reload's answer.
type ReloadResult struct {
	OK         bool     `json:"ok"`
	Generation int      `json:"generation"`
	Changed    []string `json:"changed"`
	DurationS  float64  `json:"duration_s"`
}

// CheckResult is POST /v1/config/check's answer for a config that loads.
type CheckResult struct {
	OK       bool            `json:"ok"`
	Path     string          `json:"path"`
	Warnings []ConfigProblem `json:"warnings"`
}

// UpgradeResult is POST /v1/upgrade's answer.
type UpgradeResult struct {
	OK         bool   `json:"ok"`
	OldPid     int    `json:"old_pid"`
	NewPid     int    `json:"new_pid"`
	OldVersion string `json:"old_version"`
	NewVersion string `json:"new_version"`
}

// ConfigView is GET /v1/config.
type ConfigView struct {
	Path     string                  `json:"path"`
	Settings map[string]SettingValue `json:"settings"`
}

// SettingValue is one effective setting and where it came from.
type SettingValue struct {
	Value  string `json:"value"`
	Source string `json:"source"`          // flag, env, file, default
	Where  string `json:"where,omitempty"` // --workers, PADDOCK_WORKERS, site.ini:12
}

// Listener is one listening socket.
type Listener struct {
	Bind    string `json:"bind"`
	Network string `json:"network"`
	Addr    string `json:"addr"`
	TLS     bool   `json:"tls"`
}

// UpstreamsResponse is GET /v1/upstreams: every proxy section of the
// running pipelines with its upstreams, and each upstream's state in
// each worker (health checks, connection counts and balancing are per
// worker process).
type UpstreamsResponse struct {
	Proxies []ProxyUpstreams `json:"proxies"`
	// Workers are the workers asked; one that did not answer within the
	// master's deadline (2 s) has Answered false and is missing from
	// Proxies.
	Workers []UpstreamsWorker `json:"workers"`
}

// UpstreamsWorker is a worker asked for its upstreams.
type UpstreamsWorker struct {
	ID         int    `json:"id"`
	Pid        int    `json:"pid"`
	Generation int    `json:"generation"`
	Answered   bool   `json:"answered"`
	Error      string `json:"error,omitempty"`
}

// ProxyUpstreams is one proxy section (the section that configures it,
// e.g. "app:backend") and its upstreams in config order.
type ProxyUpstreams struct {
	Section   string     `json:"section"`
	Balance   string     `json:"balance"`
	Upstreams []Upstream `json:"upstreams"`
}

// Upstream is one upstream of a proxy section and its state per worker.
type Upstream struct {
	URL     string          `json:"url"`
	Workers []UpstreamState `json:"workers"`
}

// UpstreamState is an upstream as one worker sees it.
type UpstreamState struct {
	Pid        int `json:"pid"`
	WorkerID   int `json:"worker_id"`
	Generation int `json:"generation"`
	// Healthy: the worker sends it requests. State is "up" or "down";
	// Reason why it is down: "failures" (fail_threshold consecutive
	// failed requests, for fail_timeout) or "health_check".
	Healthy bool   `json:"healthy"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	// Failures is the count of consecutive failed requests; DownForS how
	// long a "failures" down mark lasts still (0: the next request is its
	// trial).
	Failures int64   `json:"failures"`
	DownForS float64 `json:"down_for_s,omitempty"`
	// Active is the requests in flight to it (connections in use).
	Active int64 `json:"active"`
	// Check is the active health check: "off", "pending", "passing" or
	// "failing", with the last probe's error.
	Check      string `json:"check"`
	CheckError string `json:"check_error,omitempty"`
	// Requests and Errors count the attempts sent to it and those that
	// failed, since the worker built the pipeline.
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
}
