// Package worker runs paddock's serving side: it resolves the server
// settings, loads the pipeline, opens the listeners and serves them until
// asked to stop.
//
// Settings (settings.go) use gunicorn's names and come from four layers,
// highest first: a command-line flag, a PADDOCK_<NAME> environment
// variable, the [server:main] section, the default. Resolve records where
// each value came from (Settings.Origins), reports bad file values at
// file:line and names the flag or variable otherwise, and warns, at
// file:line, about settings it does not know (waitress' threads, gunicorn's
// worker_class...) since real configs carry them.
//
// Process model, for now: workers = 0, the only one implemented. The
// process that owns the listeners serves them itself; workers > 0 is
// accepted with a warning. The serving part (type server: one http.Server
// per listener, started and stopped together) holds no process-wide state,
// so the worker processes of the master/worker split can reuse it on the
// listeners their master hands them.
//
// Signals (Signals), gunicorn's table: TERM stops gracefully (stop
// accepting, in-flight requests get graceful_timeout to finish, then what
// is left is closed); INT and QUIT stop immediately; INT or QUIT during a
// graceful stop cuts it short. HUP, USR1, USR2, TTIN and TTOU are caught
// and logged as not supported yet, so they do not kill the server; PIPE is
// ignored.
//
// Request limits: Go's http.Server bounds only the whole request head (431
// past MaxHeaderBytes). gunicorn's limit_request_line (414 here),
// limit_request_fields and limit_request_field_size (431) are checked by a
// thin handler in front of the pipeline, and MaxHeaderBytes is derived from
// them so that Go's total never fires first. A bad request never gets a
// 5xx.
//
// Files: the pidfile, when set, is written atomically once every listener
// accepts and removed on exit if it still names this process.
package worker
