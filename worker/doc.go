// Package worker runs paddock's serving side: it resolves the server
// settings, loads the pipeline, opens the listeners and serves them, in
// process or through a master (Arbiter) supervising worker processes,
// until asked to stop.
//
// Settings (settings.go) use gunicorn's names and come from four layers,
// highest first: a command-line flag, a PADDOCK_<NAME> environment
// variable, the [server:main] section, the default. Resolve records where
// each value came from (Settings.Origins), reports bad file values at
// file:line and names the flag or variable otherwise, and warns, at
// file:line, about settings it does not know (waitress' threads, gunicorn's
// worker_class...) since real configs carry them.
//
// Process model. workers = 0: the process that owns the
// listeners serves them itself (Serve). workers >= 1 (the default is 1):
// the master (Arbiter) opens every listener once (listener.Open, through
// ArbiterOptions.Opener for binary upgrades), checks the pipeline builds
// (a broken config exits 1 with file:line before any worker starts), and
// re-executes its own binary (/proc/self/exe: the master's own inode,
// so a binary replaced for an upgrade never runs as the old master's
// worker) as
// `paddock __worker` for each worker. A worker gets the listeners as
// ExtraFiles (fds 3..), one end of a SOCK_CLOEXEC unix socketpair after
// them, and the environment contract of child.go: PADDOCK_WORKER_ID,
// _GENERATION, _LISTENERS (the binds, in fd order, JSON), _CHANNEL_FD,
// _CONFIG, _APP, _SERVER, _SETTINGS (the master's resolved Settings as
// JSON, so flag and environment overrides apply), _MAX_REQUESTS (jitter
// drawn) and _LOG_JSON. Nothing else is inherited. The master never
// serves a request; with workers it keeps its listeners only to hand them
// on, and closes them as soon as it stops.
//
// The listener files are re-wrapped before exec (spawn.go: inheritable):
// Go's socket Files switch the shared open file description to blocking
// mode in Fd, which os.StartProcess calls (docs/pitfalls.md D8), and a sibling
// worker woken for the same connection would then block in accept4 where
// no Close reaches it. RestoreNonblock runs after every start as well.
//
// The channel: line-delimited JSON, one object per line; protocol.go
// lists every message type with its fields and who sends it.
//
// Anything else from a worker (not JSON, an unknown type, a line over 64
// KiB) is logged and the worker killed and replaced. A reload line may be
// up to 16 MiB (MaxReloadMessageSize); every send to a worker gives up
// after 5 s, so a stopped worker never blocks the master.
//
// Reload: HUP, POST /v1/reload and the config watcher (package
// reload, wired in internal/command/cmd_watch.go; watch_config, on by default, workers >= 1
// only) all run Arbiter.reload. The master validates everything first:
// the whole pipeline (pipeline.Load, then Close), the settings (the
// Reload hook resolves them with the same flags and environment as at
// start, so flag and PADDOCK_* overrides keep winning over the file) and
// the TLS key pair (readTLS). The pipeline's load reads each file once
// (the watcher's reloads take the settled bytes of its Snapshot instead:
// ReloadSaved) and the settings and the canonical graph are built from
// those same bytes, so a save landing mid-reload cannot give them
// different contents. A reload the watcher started is refused when it
// would take the server off its addresses (guardAddresses: none of the
// running binds kept, or no [server:*] section left while a bind the
// file named is dropped); HUP and ctl reload apply such a config. A
// failure changes nothing: it is logged at file:line and shown as
// last_reload in status. A success bumps the
// generation; then, if no setting the worker processes were started with
// changed (one whose Setting.Reload is ReloadRoll: the settings table
// says what a reload does with each setting, and the reload code, the
// manual and the docs all read it there), every ready worker gets reload, which
// also carries certfile and keyfile as the master read them, and the
// worker swaps the certificate its TLS listeners serve
// (listener.Certificate) together with the pipeline; new contents of the
// TLS files thus need no new workers. The
// master sends the bytes its validating load read (every file of the
// config, config: references included; pipeline.Pipeline.Contents) and
// their digest (ContentsDigest: path and content sha256, in load order).
// The worker builds the pipeline from those bytes (pipeline.LoadOptions
// Files), never from the files as they are by then: a save landing while
// workers load the previous one cannot make them disagree with the
// master or restart. A worker started later (a roll, a crash, TTIN) gets
// the same bytes in a memfd (PADDOCK_WORKER_CONFIG_FD), so a broken edit
// on disk never reaches a new worker either. A config over 8 MiB is not
// inlined in reload: the worker reads the files and refuses a digest
// mismatch (it is then replaced). So a worker only ever serves the
// generation the master validated. On success it swaps its handler
// (swap.go: an atomic.Pointer to a refcounted generation): requests in
// flight finish on the old graph, every next request, keep-alive
// connections included, gets the new one, and the old Pipeline is closed
// when its last request ends. The worker answers reloaded or
// reload_failed; a worker that fails, or does not answer within 10 s, is
// rolled (a new-generation replacement is ready before it drains).
// Reload returns once every worker serves the new generation. When worker
// settings changed, the workers are rolled one at a time instead. Workers
// started later (crash, TTIN, max_requests) start on the current
// generation. A bind change is reconciled (listener.Set.Reconcile): new
// sockets open before the roll, a removed bind is retired once no worker
// of an older generation is left (retireListeners), and a bind named
// again before that takes its held socket back (takeBackRetiring) rather
// than binding the address anew, which would fail: it is in use.
// Settings whose policy is ReloadRestart (reuse_port, control_socket,
// user, pidfile, ...) keep their running value (keepRestartSettings), a
// warning is logged, and the reload's "changed" says "reuse_port (needs
// restart)". A new workers value in
// the file sets the target only when it differs from the file's previous
// value, so a count set at run time (TTIN, ctl workers) survives other
// edits (docs/pitfalls.md B6). A worker whose
// channel hits EOF (its master is gone) drains and exits, stopping at
// once if requests still run after timeout (when shorter than
// graceful_timeout): no orphans.
//
// TLS keys: the master reads certfile and keyfile (regular files only,
// listener.ReadKeyPair), at start and on every reload, and workers get
// the bytes it checked, in the same memfd at spawn and in the reload
// message; a worker never opens them. With user set the master stays
// root and the workers do not: a root-only 0600 key in a 0700 directory,
// as /etc/ssl/private is, is read by the master alone (nginx's model).
// The channel's messages are never logged, nor are the bytes in errors
// (TLSPair's String hides them). workers = 0 reads the files itself.
//
// Supervision: one goroutine (Arbiter.Run) owns every worker record and
// selects over child events (one wait goroutine and one reader goroutine
// per worker send them), signals, a 100 ms tick and requests
// (the control.Controller methods in control.go, for the control
// socket). Worker states: booting → ready → draining → exited. A worker
// that dies is replaced at once; one silent for timeout (heartbeats) is
// SIGKILLed and replaced; one past max_requests (+ jitter) asks to
// retire, gets a replacement, and is stopped gracefully once the
// replacement is ready; a draining worker is SIGKILLed after
// graceful_timeout + 1 s. A worker that fails to boot is retried after a
// backoff (1 s doubling to 30 s; shared by all slots, reset by any ready
// worker), except at first start: if no worker has ever been ready, the
// master stops and Run returns *BootError (gunicorn's WORKER_BOOT_ERROR).
//
// Master signals (gunicorn's table): TERM graceful stop; INT and QUIT
// immediate (workers get stop immediate, SIGKILL after 2 s), also during a
// graceful stop; HUP reloads the config (see Reload above: in place, or
// a roll, a new worker ready before an old one drains, when worker
// settings changed); TTIN one more worker; TTOU one fewer
// (the oldest, gracefully, never below 1); USR1 reopens the master's
// error log and tells workers to reopen their access logs (logs.go);
// WINCH is logged and ignored (paddock never daemonises); USR2 upgrades
// the binary (upgrade.go), as ctl upgrade does. Workers: TERM drains, QUIT
// stops at once, USR1 reopens logs; HUP, INT, TTIN, TTOU, USR2 and WINCH
// are ignored (a terminal's Ctrl-C reaches the whole process group: the
// master decides).
//
// Signals of the in-process mode (Signals), gunicorn's table: TERM stops
// gracefully (stop accepting, in-flight requests get graceful_timeout to
// finish, then what is left is closed); INT and QUIT stop immediately;
// INT or QUIT during a graceful stop cuts it short; USR1 reopens the log
// files (Serve). HUP, USR2, TTIN and TTOU are caught and logged as not
// supported in-process; PIPE is ignored.
//
// Request limits: Go's http.Server bounds only the whole request head (431
// past MaxHeaderBytes). gunicorn's limit_request_line (414 here),
// limit_request_fields and limit_request_field_size (431) are checked by a
// thin handler in front of the pipeline, and MaxHeaderBytes is derived from
// them so that Go's total never fires first. Before any of that,
// strict_http puts package httpguard around every listener (guard.go): it
// answers 400 to HTTP/1 heads whose framing a proxy could read otherwise
// (bare LF, obs-fold, CL with TE, ...) before net/http parses them. A bad
// request never gets a 5xx.
//
// Files: the pidfile, when set, is written atomically once every listener
// accepts and removed on exit if it still names this process. The log
// files (errorlog, accesslog) and their bounded writers are described in
// logs.go; the access log wraps the served handler in observe, the one
// place request observers are added in both modes.
package worker
