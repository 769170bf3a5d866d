package worker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Message types of the master/worker channel: line-delimited JSON, one
// object per line, at most MaxMessageSize a line (a reload up to
// MaxReloadMessageSize). TestProtocolTable checks every type is here.
//
// Worker → master:
//
//	{"type":"ready","pid":N}                                serving; boot is over
//	{"type":"boot_error","error":"..."}                     pipeline or listeners failed; exits ExitWorkerBootError
//	{"type":"heartbeat","requests":N,"in_flight":M}         at least every timeout/4 (≤ 10 s)
//	{"type":"retire","requests":N,"in_flight":M}            max_requests reached: replace me
//	{"type":"ack","command":"reopen_logs"[,"error":"..."]}  answer to reopen_logs; error: the file that could not be reopened (the old one is kept)
//	{"type":"unsupported","command":"..."}                  a command this worker does not know
//	{"type":"reloaded","generation":G}                      swapped to generation G in place
//	{"type":"reload_failed","generation":G,"error":"..."}   still serving the previous one
//	{"type":"metrics","id":I,"data":SNAPSHOT}               answer to metrics_request I; id 0: unasked, just before exiting
//	{"type":"metrics_gather","id":I}                        the metrics app asks for the whole server's metrics
//	{"type":"upstreams","id":I,"generation":G,"data":JSON}  answer to upstreams_request I (or "error")
//
// Master → worker:
//
//	{"type":"stop","mode":"graceful"|"immediate"}           drain within graceful_timeout, or close now
//	{"type":"reopen_logs"}                                  reopen the access log file at its path (logs.go)
//	{"type":"reload","generation":G,"config_sha256":D,"files":{PATH:BASE64},"tls":{"cert":B64,"key":B64}}  build generation G and swap to it
//	{"type":"metrics_request","id":I}                       send a metrics snapshot
//	{"type":"metrics_result","id":I,"data":TEXT}            answer to metrics_gather I (or "error")
//	{"type":"upstreams_request","id":I}                     send the proxy apps' upstream state (GET /v1/upstreams)
const (
	// worker → master
	MsgReady       = "ready"
	MsgBootError   = "boot_error"
	MsgHeartbeat   = "heartbeat"
	MsgRetire      = "retire"
	MsgAck         = "ack"
	MsgUnsupported = "unsupported"
	// MsgReloaded and MsgReloadFailed answer reload.
	MsgReloaded     = "reloaded"
	MsgReloadFailed = "reload_failed"
	// MsgMetrics carries a worker's metrics snapshot (Data): the answer
	// to metrics_request (ID), or unasked (ID 0) just before it exits.
	MsgMetrics = "metrics"
	// MsgMetricsGather asks the master for the whole server's metrics
	// (the worker's metrics app); answered by metrics_result with its ID.
	MsgMetricsGather = "metrics_gather"
	// MsgUpstreams answers upstreams_request (ID): the proxy apps'
	// upstream state (Data, JSON []pipeline.ProxyStatus) of the
	// generation the worker serves (Generation), or Error.
	MsgUpstreams = "upstreams"
	// master → worker
	MsgStop       = "stop"
	MsgReopenLogs = "reopen_logs"
	MsgReload     = "reload"
	// MsgMetricsRequest asks for a metrics snapshot (answered by metrics
	// with its ID).
	MsgMetricsRequest = "metrics_request"
	// MsgMetricsResult answers metrics_gather: the exposition (Data) or
	// Error.
	MsgMetricsResult = "metrics_result"
	// MsgUpstreamsRequest asks for the upstream state (answered by
	// upstreams with its ID; GET /v1/upstreams).
	MsgUpstreamsRequest = "upstreams_request"
)

// MaxMessageSize bounds one line of the channel, newline included. A
// longer line is garbage: the peer is broken.
const MaxMessageSize = 64 << 10

// MaxReloadMessageSize bounds a reload line, which carries the validated
// config files (base64 in JSON) and the TLS pair; the master sends larger
// configs without their contents (MaxInlineConfig) and workers read the
// files themselves. MaxInlineConfig and twice
// listener.MaxKeyPairFileSize, in base64, fit.
const MaxReloadMessageSize = 16 << 20

// MaxInlineConfig is the most config bytes a reload carries.
const MaxInlineConfig = 8 << 20

// MaxMetricsMessageSize bounds the lines that carry metrics (a worker's
// snapshot, the master's exposition for a worker).
const MaxMetricsMessageSize = 4 << 20

// Direction says which side sent a message; each side accepts only the
// types the other may send.
type Direction int

const (
	// FromWorker: messages a worker sends its master.
	FromWorker Direction = iota + 1
	// FromMaster: messages the master sends a worker.
	FromMaster
)

var validTypes = map[Direction]map[string]bool{
	FromWorker: {MsgReady: true, MsgBootError: true, MsgHeartbeat: true, MsgRetire: true, MsgAck: true, MsgUnsupported: true,
		MsgReloaded: true, MsgReloadFailed: true, MsgMetrics: true, MsgMetricsGather: true, MsgUpstreams: true},
	FromMaster: {MsgStop: true, MsgReopenLogs: true, MsgReload: true, MsgMetricsRequest: true, MsgMetricsResult: true,
		MsgUpstreamsRequest: true},
}

// Message is one line of the channel: a JSON object whose "type" says
// which of the other fields matter.
type Message struct {
	Type string `json:"type"`
	// Pid is the worker's pid (ready).
	Pid int `json:"pid,omitempty"`
	// Error is the boot failure (boot_error), or the log file a worker
	// could not reopen (ack of reopen_logs).
	Error string `json:"error,omitempty"`
	// Requests is how many requests the worker has answered, InFlight how
	// many it is answering (heartbeat, retire).
	Requests uint64 `json:"requests,omitempty"`
	InFlight int64  `json:"in_flight,omitempty"`
	// Mode is "graceful" or "immediate" (stop).
	Mode string `json:"mode,omitempty"`
	// Generation is the config generation (reload, reloaded,
	// reload_failed).
	Generation int `json:"generation,omitempty"`
	// ConfigSHA256 is the digest (ConfigDigest) of the config files the
	// master validated for a reload; the worker checks it against what it
	// loaded.
	ConfigSHA256 string `json:"config_sha256,omitempty"`
	// Files are the contents of the config files the master validated
	// (reload), by the names the load uses (pipeline.LoadOptions.Files):
	// the worker builds from them, never from files that changed since.
	Files map[string][]byte `json:"files,omitempty"`
	// TLS is certfile and keyfile as the master read and checked them
	// (reload, with TLS on): the worker swaps its certificate to them and
	// never opens the files. Never logged (its String hides the bytes).
	TLS *TLSPair `json:"tls,omitempty"`
	// Command names the command an ack or unsupported answers.
	Command string `json:"command,omitempty"`
	// ID pairs a metrics or upstreams request with its answer.
	ID uint64 `json:"id,omitempty"`
	// Data is a metrics snapshot (metrics), an exposition
	// (metrics_result) or the upstream state (upstreams).
	Data []byte `json:"data,omitempty"`
}

// ErrGarbage is wrapped by every error about a malformed line.
var ErrGarbage = errors.New("garbage on the worker channel")

// Encoder writes messages, one JSON object per line. It is safe for
// concurrent use.
type Encoder struct {
	mu sync.Mutex
	w  io.Writer
}

// NewEncoder writes to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Send writes m as one line.
func (e *Encoder) Send(m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	b = append(b, '\n')
	if limit := maxSize(m.Type); len(b) > limit {
		return fmt.Errorf("encode %s: %d bytes is over %d", m.Type, len(b), limit)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return nil
}

// Decoder reads the messages one side accepts.
type Decoder struct {
	sc    *bufio.Scanner
	dir   Direction
	limit int
}

// NewDecoder reads messages sent in direction dir from r.
func NewDecoder(r io.Reader, dir Direction) *Decoder {
	sc := bufio.NewScanner(r)
	limit := MaxMetricsMessageSize
	if dir == FromMaster {
		limit = MaxReloadMessageSize
	}
	sc.Buffer(make([]byte, 0, 4096), limit)
	return &Decoder{sc: sc, dir: dir, limit: limit}
}

// Next returns the next message. At the end of the stream it returns
// io.EOF; a line that is not a JSON object of a type this direction allows
// (or is over MaxMessageSize, MaxReloadMessageSize from the master) is an error wrapping ErrGarbage, after which
// the decoder must not be used again.
func (d *Decoder) Next() (Message, error) {
	if !d.sc.Scan() {
		err := d.sc.Err()
		if err == nil {
			return Message{}, io.EOF
		}
		if errors.Is(err, bufio.ErrTooLong) {
			return Message{}, fmt.Errorf("%w: line over %d bytes", ErrGarbage, d.limit)
		}
		return Message{}, fmt.Errorf("read worker channel: %w", err)
	}
	line := d.sc.Bytes()
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %q: %w", ErrGarbage, truncate(line), err)
	}
	if !validTypes[d.dir][m.Type] {
		return Message{}, fmt.Errorf("%w: unknown message type %q", ErrGarbage, m.Type)
	}
	// The reader's buffer fits the largest type; each type has its own
	// bound (a heartbeat of a megabyte is a broken peer).
	if limit := maxSize(m.Type); len(line)+1 > limit {
		return Message{}, fmt.Errorf("%w: %s line over %d bytes", ErrGarbage, m.Type, limit)
	}
	return m, nil
}

func truncate(b []byte) string {
	const n = 80
	// A reload's TLS pair is a private key: never quoted in an error.
	if i := bytes.Index(b, []byte(`"tls":`)); i >= 0 {
		b = append(b[:i:i], "[tls redacted]"...)
	}
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// maxSize is the longest line a message of type t may be.
func maxSize(t string) int {
	switch t {
	case MsgReload:
		return MaxReloadMessageSize
	case MsgMetrics, MsgMetricsResult, MsgUpstreams:
		return MaxMetricsMessageSize
	}
	return MaxMessageSize
}
