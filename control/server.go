package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/logname"
)

// Limits and timeouts of the control server. Reload and upgrade are
// synchronous, so WriteTimeout must outlast DefaultOpTimeout.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 64 << 10
	MaxBodyBytes      = 1 << 20

	// DefaultOpTimeout bounds reload, upgrade and config check.
	DefaultOpTimeout = 55 * time.Second
	// DefaultRequestTimeout bounds every other Controller call.
	DefaultRequestTimeout = 10 * time.Second
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	// Controller is the master the API drives. Required.
	Controller Controller
	// Logger gets one line per request (debug), refused peers (warn) and
	// internal errors (error). NewServer names it "control". Nil discards.
	Logger hclog.Logger
	// Version is the master's version: the Server header, and Status's
	// version when the Controller leaves it empty.
	Version string
	// AllowedUIDs are the peer uids (SO_PEERCRED) that may use the API.
	// Nil means the server process's uid (os.Getuid()) and root; an empty
	// non-nil slice refuses everyone. Tests inject another uid here.
	AllowedUIDs []uint32
	// OpTimeout bounds reload, upgrade and config check; zero means
	// DefaultOpTimeout. Keep it under WriteTimeout.
	OpTimeout time.Duration
	// RequestTimeout bounds the other Controller calls; zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// Server is the control API's HTTP server. It accepts any Host header:
// the socket's mode (0600) and the peer uid check are the security
// boundary (docs/pitfalls.md F3, F4).
//
// Goroutines: http.Server's per-connection goroutines, and one goroutine
// per accepted POST /v1/stop that calls Controller.Stop after the answer is
// flushed. Shutdown does not wait for the latter, since a master's stop
// typically ends by calling Shutdown; WaitStops does.
type Server struct {
	ctrl    Controller
	log     hclog.Logger
	version string
	allowed []uint32
	opT     time.Duration
	reqT    time.Duration
	mux     *http.ServeMux
	srv     *http.Server
	stops   sync.WaitGroup
}

// NewServer returns a Server for opts. It panics without a Controller.
func NewServer(opts ServerOptions) *Server {
	if opts.Controller == nil {
		panic("control: NewServer: nil Controller")
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{
		ctrl:    opts.Controller,
		log:     log.Named(logname.Control),
		version: opts.Version,
		allowed: opts.AllowedUIDs,
		opT:     opts.OpTimeout,
		reqT:    opts.RequestTimeout,
		mux:     http.NewServeMux(),
	}
	if s.allowed == nil {
		s.allowed = defaultAllowedUIDs()
	}
	if s.opT <= 0 {
		s.opT = DefaultOpTimeout
	}
	if s.reqT <= 0 {
		s.reqT = DefaultRequestTimeout
	}
	s.routes()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnContext:       connContext,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	return s
}

// Serve answers the API on ln until Shutdown; it then returns nil. The
// Server does not own ln beyond that: Shutdown closes it (with a
// tableflip Opener, only this process's copy).
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in flight finish within ctx and
// closes the listener. It does not wait for a Controller.Stop started by
// POST /v1/stop (see WaitStops).
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("control: shutdown: %w", err)
	}
	return nil
}

// WaitStops waits for the Controller.Stop calls POST /v1/stop started.
// Call it only from a goroutine those calls do not wait for.
func (s *Server) WaitStops() { s.stops.Wait() }

// apiHandler is one endpoint. Its error becomes the JSON error answer.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

func (h apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		writeError(w, errorFor(err))
	}
}

func (s *Server) routes() {
	for route, h := range map[Route]apiHandler{
		RouteStatus:        s.handleStatus,
		RouteWorkers:       s.handleWorkers,
		RouteWorkersAdd:    s.handleAdd,
		RouteWorkersRemove: s.handleRemove,
		RouteWorkersTarget: s.handleTarget,
		RouteWorkerKill:    s.handleKill,
		RouteReload:        s.handleReload,
		RouteConfigCheck:   s.handleCheck,
		RouteUpgrade:       s.handleUpgrade,
		RouteStop:          s.handleStop,
		RouteConfig:        s.handleConfig,
		RoutePipeline:      s.handlePipeline,
		RouteLogsReopen:    s.handleReopen,
		RouteListeners:     s.handleListeners,
		RouteUpstreams:     s.handleUpstreams,
	} {
		s.mux.Handle(route.pattern(), h)
	}
}

// ServeHTTP checks the peer, routes, and answers unknown paths and wrong
// methods in JSON (the mux would answer in plain text). A panic in a
// handler is a 500 and a log line, never a dead master.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	peer, _ := PeerFrom(r.Context())
	log := s.log.With("method", r.Method, "path", r.URL.Path, "peer_uid", peer.UID, "peer_pid", peer.PID)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.Error("panic in handler", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !sw.wrote {
				writeError(sw, &APIError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error (logged by the master)"})
			}
		}
		switch {
		case sw.status >= 500:
			log.Error("request failed", "status", sw.status, "duration", time.Since(start))
		default:
			log.Debug("request", "status", sw.status, "duration", time.Since(start))
		}
	}()
	if s.version != "" {
		sw.Header().Set("Server", "paddock/"+s.version)
	}
	if !s.peerAllowed(peer) {
		log.Warn("refused control request from a peer with another uid", "allowed_uids", s.allowed)
		writeError(sw, &APIError{Status: http.StatusForbidden, Code: CodeForbidden,
			Message: fmt.Sprintf("peer uid %s may not use this control socket: run as the master's user or root", peer.uidString())})
		return
	}
	h, _ := s.mux.Handler(r)
	if _, ok := h.(apiHandler); ok {
		s.mux.ServeHTTP(sw, r) // sets r.PathValue
		return
	}
	// Not ours: the mux's 404, 405 or path-cleaning redirect.
	cw := &captureWriter{header: http.Header{}}
	h.ServeHTTP(cw, r)
	if cw.status == http.StatusMethodNotAllowed {
		sw.Header().Set("Allow", cw.header.Get("Allow"))
		writeError(sw, &APIError{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
			Message: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, cw.header.Get("Allow"))})
		return
	}
	writeError(sw, &APIError{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("no endpoint %s (see docs/control.md)", r.URL.Path)})
}

// statusWriter records the status for the log and whether anything was
// written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// captureWriter swallows the mux's plain-text 404/405 answer.
type captureWriter struct {
	header http.Header
	status int
}

func (w *captureWriter) Header() http.Header { return w.header }
func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *captureWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("control: encode answer: %w", err)
	}
	b = append(b, '\n')
	writeBody(w, status, "application/json", b)
	return nil
}

func writeBody(w http.ResponseWriter, status int, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b) // the peer went away: nothing to do
}

func writeError(w http.ResponseWriter, e *APIError) {
	// A config error may quote a value: an upstream URL with a password.
	details := make([]ConfigProblem, len(e.Details))
	for i, d := range e.Details {
		d.Message = redactLines(d.Message, nil)
		details[i] = d
	}
	if len(details) == 0 {
		details = nil
	}
	b, err := json.Marshal(ErrorBody{Error: redactLines(e.Error(), nil), Code: e.Code, Details: details})
	if err != nil { // cannot happen: strings and ints
		b = []byte(`{"error":"internal error","code":"internal"}`)
	}
	writeBody(w, e.Status, "application/json", append(b, '\n'))
}

// decode reads an optional JSON body into dst: an empty (or all-space)
// body leaves dst as it is. Unknown fields, trailing data, and bodies over
// MaxBodyBytes are errors.
func decode(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("control: read body: %w", err)
		}
		return badRequest("cannot read the request body: " + err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badRequest("malformed JSON body: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("malformed JSON body: data after the JSON value")
	}
	return nil
}

// count reads a CountRequest; def is the count of an absent one (0:
// required).
func count(w http.ResponseWriter, r *http.Request, def int) (int, error) {
	var req CountRequest
	if err := decode(w, r, &req); err != nil {
		return 0, err
	}
	n := def
	if req.Count != nil {
		n = *req.Count
	} else if def == 0 {
		return 0, badRequest(`missing "count"`)
	}
	if n < 1 || n > MaxCount {
		return 0, badRequest(fmt.Sprintf(`"count" must be between 1 and %d, not %d`, MaxCount, n))
	}
	return n, nil
}

func (s *Server) quick(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.reqT)
}

func (s *Server) long(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opT)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := s.quick(r)
	defer cancel()
	st, err := s.ctrl.Status(ctx)
	if err != nil {
		return err
	}
	if st.Version == "" {
		st.Version = s.version
	}
	if st.Listeners == nil {
		st.Listeners = []Listener{}
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleWorkers(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := s.quick(r)
	defer cancel()
	ws, err := s.ctrl.Workers(ctx)
	if err != nil {
		return err
	}
	if ws == nil {
		ws = []Worker{}
	}
	return writeJSON(w, http.StatusOK, WorkersResponse{Workers: ws})
}

func (s *Server) changeWorkers(w http.ResponseWriter, r *http.Request, def int, f func(context.Context, int) (int, int, error)) error {
	n, err := count(w, r, def)
	if err != nil {
		return err
	}
	ctx, cancel := s.quick(r)
	defer cancel()
	prev, target, err := f(ctx, n)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, WorkerChange{Previous: prev, Target: target})
}

func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) error {
	return s.changeWorkers(w, r, 1, s.ctrl.AddWorkers)
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) error {
	return s.changeWorkers(w, r, 1, s.ctrl.RemoveWorkers)
}

func (s *Server) handleTarget(w http.ResponseWriter, r *http.Request) error {
	return s.changeWorkers(w, r, 0, s.ctrl.SetTarget)
}

func (s *Server) handleKill(w http.ResponseWriter, r *http.Request) error {
	pid, err := strconv.Atoi(r.PathValue("pid"))
	if err != nil || pid < 1 {
		return badRequest(fmt.Sprintf("worker pid must be a positive integer, not %q", r.PathValue("pid")))
	}
	force, err := boolQuery(r, "force")
	if err != nil {
		return err
	}
	ctx, cancel := s.quick(r)
	defer cancel()
	if err := s.ctrl.KillWorker(ctx, pid, force); err != nil {
		if errors.Is(err, ErrNoSuchWorker) {
			return fmt.Errorf("worker pid %d: %w", pid, err)
		}
		return err
	}
	res := KillResult{Pid: pid, Signal: "TERM"}
	if force {
		res.Signal = "KILL"
	}
	return writeJSON(w, http.StatusOK, res)
}

func boolQuery(r *http.Request, name string) (bool, error) {
	switch v := r.URL.Query().Get(name); v {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	default:
		return false, badRequest(fmt.Sprintf("?%s= takes 1 or 0, not %q", name, v))
	}
}

// noBody accepts an empty body or {} for the endpoints that take no
// arguments.
func noBody(w http.ResponseWriter, r *http.Request) error {
	var empty struct{}
	return decode(w, r, &empty)
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(w, r); err != nil {
		return err
	}
	ctx, cancel := s.long(r)
	defer cancel()
	res, err := s.ctrl.Reload(ctx)
	if err != nil {
		return err
	}
	if res.Changed == nil {
		res.Changed = []string{}
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) error {
	var req CheckRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Path != "" && !filepath.IsAbs(req.Path) {
		return badRequest(fmt.Sprintf(`"path" must be absolute (the master's working directory is not yours): %q`, req.Path))
	}
	ctx, cancel := s.long(r)
	defer cancel()
	res, err := s.ctrl.CheckConfig(ctx, req.Path)
	if err != nil {
		return err
	}
	if res.Warnings == nil {
		res.Warnings = []ConfigProblem{}
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleUpgrade(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(w, r); err != nil {
		return err
	}
	ctx, cancel := s.long(r)
	defer cancel()
	res, err := s.ctrl.Upgrade(ctx)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// handleStop answers 202 and flushes it, then calls Controller.Stop in a
// goroutine the Server owns (WaitStops), so the caller learns the stop
// was accepted before the master and its socket go away.
func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) error {
	var req StopRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Mode == "" {
		req.Mode = StopGraceful
	}
	switch {
	case req.Mode != StopGraceful && req.Mode != StopImmediate:
		return badRequest(fmt.Sprintf(`"mode" must be %q or %q, not %q`, StopGraceful, StopImmediate, req.Mode))
	case math.IsNaN(req.GraceS) || req.GraceS < 0 || req.GraceS > MaxGrace:
		return badRequest(fmt.Sprintf(`"grace_s" must be between 0 and %d`, MaxGrace))
	case req.GraceS > 0 && req.Mode == StopImmediate:
		return badRequest(`"grace_s" applies to mode "graceful" only`)
	}
	graceful := req.Mode == StopGraceful
	grace := time.Duration(req.GraceS * float64(time.Second))
	w.Header().Set("Connection", "close")
	if err := writeJSON(w, http.StatusAccepted, StopResult{State: "stopping", Mode: req.Mode, GraceS: req.GraceS}); err != nil {
		return err
	}
	_ = http.NewResponseController(w).Flush() // best effort: Stop must run anyway
	ctx := context.WithoutCancel(r.Context())
	s.log.Info("stop requested", "mode", req.Mode, "grace", grace)
	s.stops.Go(func() {
		if err := s.ctrl.Stop(ctx, graceful, grace); err != nil {
			s.log.Error("stop failed", "mode", req.Mode, "error", err)
		}
	})
	return nil
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := s.quick(r)
	defer cancel()
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		v, err := s.ctrl.Config(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, redactView(v))
	case "ini":
		b, err := s.ctrl.ConfigFile(ctx)
		if err != nil {
			return err
		}
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", redactINI(b))
		return nil
	default:
		return badRequest(fmt.Sprintf("?format= takes json or ini, not %q", f))
	}
}

// pipelineTypes are GET /v1/pipeline's formats and content types.
var pipelineTypes = map[string]string{
	"json": "application/json",
	"text": "text/plain; charset=utf-8",
	"dot":  "text/vnd.graphviz; charset=utf-8",
}

func (s *Server) handlePipeline(w http.ResponseWriter, r *http.Request) error {
	f := r.URL.Query().Get("format")
	if f == "" {
		f = "json"
	}
	ct, ok := pipelineTypes[f]
	if !ok {
		return badRequest(fmt.Sprintf("?format= takes json, text or dot, not %q", f))
	}
	ctx, cancel := s.quick(r)
	defer cancel()
	b, err := s.ctrl.Pipeline(ctx, f)
	if err != nil {
		return err
	}
	if f == "json" {
		b = redactJSON(b)
	} else {
		// The text and dot graphs show interpolated values but not the
		// [DEFAULT] options they came from: find the secrets in the JSON.
		var known []string
		if j, err := s.ctrl.Pipeline(ctx, "json"); err == nil {
			known = secretValues(j)
		}
		b = redactText(b, known)
	}
	writeBody(w, http.StatusOK, ct, b)
	return nil
}

func (s *Server) handleReopen(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(w, r); err != nil {
		return err
	}
	ctx, cancel := s.quick(r)
	defer cancel()
	if err := s.ctrl.ReopenLogs(ctx); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, OKResponse{OK: true})
}

func (s *Server) handleListeners(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := s.quick(r)
	defer cancel()
	ls, err := s.ctrl.Listeners(ctx)
	if err != nil {
		return err
	}
	if ls == nil {
		ls = []Listener{}
	}
	return writeJSON(w, http.StatusOK, ListenersResponse{Listeners: ls})
}

func (s *Server) handleUpstreams(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := s.quick(r)
	defer cancel()
	res, err := s.ctrl.Upstreams(ctx)
	if err != nil {
		return err
	}
	if res.Proxies == nil {
		res.Proxies = []ProxyUpstreams{}
	}
	if res.Workers == nil {
		res.Workers = []UpstreamsWorker{}
	}
	return writeJSON(w, http.StatusOK, res)
}
