package control

// Request and response bodies beyond the ones the Controller returns.

// MaxCount bounds the count of the worker endpoints.
const MaxCount = 1024

// CountRequest is the body of POST /v1/workers/add, POST /v1/workers/remove
// (count defaults to 1 there, also for an empty body) and PUT
// /v1/workers/target (count required).
type CountRequest struct {
	Count *int `json:"count,omitempty"`
}

// WorkerChange answers the three worker-count endpoints.
type WorkerChange struct {
	Previous int `json:"previous"`
	Target   int `json:"target"`
}

// WorkersResponse is GET /v1/workers.
type WorkersResponse struct {
	Workers []Worker `json:"workers"`
}

// KillResult answers DELETE /v1/workers/{pid}.
type KillResult struct {
	Pid    int    `json:"pid"`
	Signal string `json:"signal"` // TERM (graceful) or KILL (?force=1)
}

// CheckRequest is the body of POST /v1/config/check; an empty path (or
// body) checks the running config file. A path must be absolute: the
// master's working directory is not the caller's.
type CheckRequest struct {
	Path string `json:"path,omitempty"`
}

// StopRequest is the body of POST /v1/stop. Mode "" means graceful.
// GraceS (seconds, graceful only) overrides graceful_timeout; 0 or absent
// keeps it.
type StopRequest struct {
	Mode   string  `json:"mode,omitempty"`
	GraceS float64 `json:"grace_s,omitempty"`
}

// Stop modes.
const (
	StopGraceful  = "graceful"
	StopImmediate = "immediate"
)

// MaxGrace bounds StopRequest.GraceS (one hour).
const MaxGrace = 3600

// StopResult answers POST /v1/stop (202 Accepted): the master is stopping
// and the control socket goes away with it.
type StopResult struct {
	State  string  `json:"state"` // "stopping"
	Mode   string  `json:"mode"`
	GraceS float64 `json:"grace_s,omitempty"`
}

// ListenersResponse is GET /v1/listeners.
type ListenersResponse struct {
	Listeners []Listener `json:"listeners"`
}

// OKResponse answers POST /v1/logs/reopen.
type OKResponse struct {
	OK bool `json:"ok"`
}
