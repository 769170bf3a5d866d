package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// DefaultClientTimeout bounds a Client request when Timeout is zero. It
// outlasts the server's DefaultOpTimeout, so a slow reload comes back as
// the server's 504 rather than a client-side timeout.
const DefaultClientTimeout = 70 * time.Second

// maxAnswerBytes bounds an answer the client reads (a pipeline graph or a
// config file can be large; anything bigger is not ours).
const maxAnswerBytes = 64 << 20

// Client talks to a master's control socket. The zero value with Path
// set is ready to use; it is safe for concurrent use. *Client implements
// Controller, so code written against a Controller also drives a remote
// master.
type Client struct {
	// Path is the control socket.
	Path string
	// How says how Path was chosen (SocketPath's how), for
	// UnreachableError; may be empty.
	How string
	// Timeout bounds each request; zero means DefaultClientTimeout.
	Timeout time.Duration
	// OnAnswer, when set, gets the body of every answer as it came, an
	// error answer's too, before it is decoded: paddock ctl --json
	// prints it.
	OnAnswer func(body []byte)

	once sync.Once
	hc   *http.Client
}

var _ Controller = (*Client)(nil)

// UnreachableError is a Client failing to connect to the socket: no
// master, a stale socket file, no permission. ctl exits 3 on it.
type UnreachableError struct {
	Path string
	How  string
	Err  error
}

func (e *UnreachableError) Error() string {
	msg := "control: cannot reach the paddock control socket at " + e.Path
	if e.How != "" {
		msg += " (" + e.How + ")"
	}
	return msg + ": " + e.Err.Error() + "; is the master running? Point ctl at its socket with --socket or PADDOCK_CTL_SOCKET"
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// dialError marks a failure to connect, as opposed to one after.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func (c *Client) client() *http.Client {
	c.once.Do(func() {
		path := c.Path
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				conn, err := d.DialContext(ctx, "unix", path)
				if err != nil {
					return nil, &dialError{err}
				}
				return conn, nil
			},
			DisableCompression:  true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		}}
	})
	return c.hc
}

// CloseIdleConnections closes the Client's kept-alive connections.
func (c *Client) CloseIdleConnections() {
	c.client().CloseIdleConnections()
}

// Raw sends method path (with query) and body (JSON-encoded unless nil)
// and returns the answer's body, also for an error answer, for ctl
// --json. A non-2xx answer returns an *APIError as well; a failure to
// connect an *UnreachableError.
func (c *Client) Raw(ctx context.Context, method, path string, body any) ([]byte, error) {
	b, _, err := c.roundTrip(ctx, method, path, body)
	return b, err
}

// Do is Raw decoding a 2xx answer into out (when out is non-nil).
func (c *Client) Do(ctx context.Context, method, path string, body any, out any) error {
	b, _, err := c.roundTrip(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) roundTrip(ctx context.Context, method, path string, body any) ([]byte, int, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultClientTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, 0, fmt.Errorf("control: %s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client().Do(req)
	if err != nil {
		var de *dialError
		if errors.As(err, &de) {
			return nil, 0, &UnreachableError{Path: c.Path, How: c.How, Err: de.err}
		}
		return nil, 0, fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("control: %s %s: read answer: %w", method, path, err)
	}
	if c.OnAnswer != nil {
		c.OnAnswer(b)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return b, resp.StatusCode, nil
	}
	ae := &APIError{Status: resp.StatusCode}
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Code != "" {
		ae.Code, ae.Message, ae.Details = eb.Code, eb.Error, eb.Details
	} else {
		ae.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
	}
	ae.Err = sentinelFor(ae.Code, ae.Details)
	return b, resp.StatusCode, ae
}

// route sends a request for route (its wildcard set to value, then
// query appended) and decodes a 2xx answer into out (when non-nil).
func (c *Client) route(ctx context.Context, r Route, value, query string, body, out any) error {
	path := r.path(value)
	if query != "" {
		path += "?" + query
	}
	return c.Do(ctx, r.Method, path, body, out)
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.route(ctx, RouteStatus, "", "", nil, &st)
	return st, err
}

// Workers is GET /v1/workers.
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	var res WorkersResponse
	err := c.route(ctx, RouteWorkers, "", "", nil, &res)
	return res.Workers, err
}

func (c *Client) change(ctx context.Context, r Route, n int) (int, int, error) {
	var res WorkerChange
	err := c.route(ctx, r, "", "", CountRequest{Count: &n}, &res)
	return res.Previous, res.Target, err
}

// AddWorkers is POST /v1/workers/add.
func (c *Client) AddWorkers(ctx context.Context, n int) (previous, target int, err error) {
	return c.change(ctx, RouteWorkersAdd, n)
}

// RemoveWorkers is POST /v1/workers/remove.
func (c *Client) RemoveWorkers(ctx context.Context, n int) (previous, target int, err error) {
	return c.change(ctx, RouteWorkersRemove, n)
}

// SetTarget is PUT /v1/workers/target.
func (c *Client) SetTarget(ctx context.Context, n int) (previous, target int, err error) {
	return c.change(ctx, RouteWorkersTarget, n)
}

// KillWorker is DELETE /v1/workers/{pid}[?force=1].
func (c *Client) KillWorker(ctx context.Context, pid int, force bool) error {
	query := ""
	if force {
		query = "force=1"
	}
	return c.route(ctx, RouteWorkerKill, strconv.Itoa(pid), query, nil, nil)
}

// Reload is POST /v1/reload; a config that does not load is an
// *APIError wrapping a *ConfigError.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	err := c.route(ctx, RouteReload, "", "", nil, &res)
	return res, err
}

// CheckConfig is POST /v1/config/check; path "" checks the running
// config, any other must be absolute.
func (c *Client) CheckConfig(ctx context.Context, path string) (CheckResult, error) {
	var res CheckResult
	var body any
	if path != "" {
		body = CheckRequest{Path: path}
	}
	err := c.route(ctx, RouteConfigCheck, "", "", body, &res)
	return res, err
}

// Upgrade is POST /v1/upgrade.
func (c *Client) Upgrade(ctx context.Context) (UpgradeResult, error) {
	var res UpgradeResult
	err := c.route(ctx, RouteUpgrade, "", "", nil, &res)
	return res, err
}

// Stop is POST /v1/stop; it returns once the master accepted the stop.
func (c *Client) Stop(ctx context.Context, graceful bool, grace time.Duration) error {
	req := StopRequest{Mode: StopImmediate}
	if graceful {
		req = StopRequest{Mode: StopGraceful, GraceS: grace.Seconds()}
	}
	return c.route(ctx, RouteStop, "", "", req, nil)
}

// Config is GET /v1/config.
func (c *Client) Config(ctx context.Context) (ConfigView, error) {
	var v ConfigView
	err := c.route(ctx, RouteConfig, "", "", nil, &v)
	return v, err
}

// body GETs route with query and returns the body of a 2xx answer.
func (c *Client) body(ctx context.Context, r Route, query string) ([]byte, error) {
	b, err := c.Raw(ctx, r.Method, r.path("")+"?"+query, nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ConfigFile is GET /v1/config?format=ini.
func (c *Client) ConfigFile(ctx context.Context) ([]byte, error) {
	return c.body(ctx, RouteConfig, "format=ini")
}

// Pipeline is GET /v1/pipeline?format=F (json, text or dot).
func (c *Client) Pipeline(ctx context.Context, format string) ([]byte, error) {
	return c.body(ctx, RoutePipeline, "format="+url.QueryEscape(format))
}

// ReopenLogs is POST /v1/logs/reopen.
func (c *Client) ReopenLogs(ctx context.Context) error {
	return c.route(ctx, RouteLogsReopen, "", "", nil, nil)
}

// Listeners is GET /v1/listeners.
func (c *Client) Listeners(ctx context.Context) ([]Listener, error) {
	var res ListenersResponse
	err := c.route(ctx, RouteListeners, "", "", nil, &res)
	return res.Listeners, err
}

// Upstreams is GET /v1/upstreams.
func (c *Client) Upstreams(ctx context.Context) (UpstreamsResponse, error) {
	var res UpstreamsResponse
	err := c.route(ctx, RouteUpstreams, "", "", nil, &res)
	return res, err
}
