// Package metrics is paddock's Prometheus instrumentation across a
// process tree: what each worker records about the requests it serves
// (HTTP), what the master records about itself (Master), and how the
// master sums the workers' snapshots into one exposition, so a scrape of
// any worker or of the master sees the whole server. Python's client has
// to write per-process files for this (gunicorn's multiprocess mode);
// here each worker hands the master a snapshot of its registry when asked
// (protobuf, Snapshot), and the master merges them (Master.Exposition).
//
// Counters of a worker that exited are kept in the master (Master.Retire)
// so the sums never go backwards; what the worker counted after its last
// snapshot is lost, which a scrape shows as a small undercount rather than
// a reset. Per-worker series (paddock_worker_requests_total) are only
// exported for live workers.
//
// Labels are bounded: method is one of the RFC 9110 methods or "other",
// code the status code, route the urlmap mount a request was routed to
// ("/" without urlmap, "unmatched" when no mount matched).
//
// The package imports nothing of paddock's.
package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Namespace prefixes every paddock metric.
const Namespace = "paddock"

// DurationBuckets are OpenTelemetry's advised bounds for
// http.server.request.duration, in seconds.
var DurationBuckets = []float64{.005, .01, .025, .05, .075, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10}

// perWorker names the families that describe one worker: kept out of the
// retired sums.
var perWorker = map[string]bool{Namespace + "_worker_requests_total": true}

// HTTP is a worker's request metrics.
type HTTP struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	served   prometheus.Counter
}

// NewHTTP returns the request metrics of worker id (0: a server without
// workers).
func NewHTTP(id int) *HTTP {
	m := &HTTP{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by status code, method and route.",
		}, []string{"code", "method", "route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "http_request_duration_seconds",
			Help:    "Time from the request's headers to the end of the handler, by method and route.",
			Buckets: DurationBuckets,
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "http_requests_in_flight",
			Help: "Requests being answered now.",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "worker_requests_total",
			Help:        "HTTP requests answered by one worker.",
			ConstLabels: prometheus.Labels{"worker": strconv.Itoa(id)},
		}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.served)
	return m
}

// Route is how Instrument learns where a request was routed: it returns
// the request to serve, carrying a slot the pipeline fills, and that slot,
// read once the handler returned ("" when no route matched).
type Route func(r *http.Request) (*http.Request, *string)

// Instrument counts every request next answers. route may be nil (every
// request's route is "/").
func (m *HTTP) Instrument(next http.Handler, route Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		rw := &statusWriter{ResponseWriter: w}
		slot := &rootRoute
		if route != nil {
			r, slot = route(r)
		}
		defer func() {
			m.inFlight.Dec()
			method := Method(r.Method)
			rt := *slot
			if rt == "" {
				rt = "unmatched"
			}
			m.requests.WithLabelValues(codeLabel(rw.code()), method, rt).Inc()
			m.duration.WithLabelValues(method, rt).Observe(time.Since(start).Seconds())
			m.served.Inc()
		}()
		next.ServeHTTP(rw, r)
	})
}

// rootRoute is the route of every request when there is no Route.
var rootRoute = "/"

// Snapshot is the worker's registry, protobuf-delimited, for the master.
func (m *HTTP) Snapshot() ([]byte, error) {
	return encode(m.reg, expfmt.NewFormat(expfmt.TypeProtoDelim))
}

// Registry is the worker's registry (a server without workers serves it
// directly).
func (m *HTTP) Registry() *prometheus.Registry { return m.reg }

// codeLabels are the status codes as label values, made once.
var codeLabels = func() [600]string {
	var t [600]string
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func codeLabel(code int) string {
	if code >= 100 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// methods are the RFC 9110 (and PATCH) methods kept as label values.
var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// Method is the method label: the method, or "other".
func Method(m string) string {
	if slices.Contains(methods, m) {
		return m
	}
	return "other"
}

// statusWriter remembers the status code.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes through, for handlers that assert http.Flusher.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK // nothing written: net/http sends 200
	}
	return w.status
}

// Master is the master's own metrics and the sums of its workers'.
type Master struct {
	reg        *prometheus.Registry
	workers    *prometheus.GaugeVec
	reloads    *prometheus.CounterVec
	upgrades   *prometheus.CounterVec
	generation prometheus.Gauge

	mu      sync.Mutex
	retired map[string]*dto.MetricFamily // sums of exited workers' last snapshots
}

// WorkerStates are the values of paddock_workers' state label.
var WorkerStates = []string{"booting", "ready", "draining"}

// NewMaster returns the master's metrics, with the Go and process
// collectors of the master process and paddock_build_info.
func NewMaster(version string) *Master {
	m := &Master{
		reg: prometheus.NewRegistry(),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "workers",
			Help: "Worker processes, by state.",
		}, []string{"state"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "reloads_total",
			Help: "Config reloads, by result (success, failure).",
		}, []string{"result"}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "upgrades_total",
			Help: "Binary upgrades started by this master, by result (success, failure).",
		}, []string{"result"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "config_generation",
			Help: "Generation of the running config (bumped by every good reload).",
		}),
		retired: make(map[string]*dto.MetricFamily),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels name the build.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	for _, s := range WorkerStates {
		m.workers.WithLabelValues(s)
	}
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
		m.upgrades.WithLabelValues(r)
	}
	m.reg.MustRegister(m.workers, m.reloads, m.upgrades, m.generation, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetWorkers sets paddock_workers for every state (missing states are 0).
func (m *Master) SetWorkers(byState map[string]int) {
	for _, s := range WorkerStates {
		m.workers.WithLabelValues(s).Set(float64(byState[s]))
	}
}

// Reloaded counts a reload.
func (m *Master) Reloaded(ok bool, generation int) {
	m.reloads.WithLabelValues(result(ok)).Inc()
	m.generation.Set(float64(generation))
}

// Upgraded counts an upgrade.
func (m *Master) Upgraded(ok bool) { m.upgrades.WithLabelValues(result(ok)).Inc() }

// SetGeneration sets paddock_config_generation.
func (m *Master) SetGeneration(g int) { m.generation.Set(float64(g)) }

func result(ok bool) string {
	if ok {
		return "success"
	}
	return "failure"
}

// Retire keeps an exited worker's last snapshot in the sums.
func (m *Master) Retire(snapshot []byte) error {
	fams, err := decode(snapshot)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, f := range fams {
		if perWorker[name] {
			continue
		}
		if err := mergeInto(m.retired, name, f); err != nil {
			return err
		}
	}
	return nil
}

// ContentType is the exposition format Exposition writes.
var ContentType = string(expfmt.NewFormat(expfmt.TypeTextPlain))

// Exposition is the text exposition of the master's metrics plus the sum
// of the retired workers and of the live workers' snapshots.
func (m *Master) Exposition(snapshots [][]byte) ([]byte, error) {
	own, err := m.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: gather the master's metrics: %w", err)
	}
	sum := make(map[string]*dto.MetricFamily)
	m.mu.Lock()
	for name, f := range m.retired {
		if err := mergeInto(sum, name, f); err != nil {
			m.mu.Unlock()
			return nil, err
		}
	}
	m.mu.Unlock()
	for i, s := range snapshots {
		fams, err := decode(s)
		if err != nil {
			return nil, fmt.Errorf("metrics: worker snapshot %d: %w", i, err)
		}
		for name, f := range fams {
			if err := mergeInto(sum, name, f); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range own {
		if err := mergeInto(sum, f.GetName(), f); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, name := range sortedKeys(sum) {
		if err := enc.Encode(sum[name]); err != nil {
			return nil, fmt.Errorf("metrics: encode %s: %w", name, err)
		}
	}
	return buf.Bytes(), nil
}

// TextOf is the text exposition of one registry (a server without
// workers).
func TextOf(reg prometheus.Gatherer) ([]byte, error) {
	return encode(reg, expfmt.NewFormat(expfmt.TypeTextPlain))
}

func encode(g prometheus.Gatherer, format expfmt.Format) ([]byte, error) {
	fams, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: gather: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("metrics: encode %s: %w", f.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}

// decode reads a Snapshot.
func decode(b []byte) (map[string]*dto.MetricFamily, error) {
	out := make(map[string]*dto.MetricFamily)
	dec := expfmt.NewDecoder(bytes.NewReader(b), expfmt.NewFormat(expfmt.TypeProtoDelim))
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, fmt.Errorf("metrics: decode snapshot: %w", err)
		}
		out[f.GetName()] = f
	}
}

func sortedKeys(m map[string]*dto.MetricFamily) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
