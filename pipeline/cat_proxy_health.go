package pipeline

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// maintain is the proxy's one background goroutine, stopped by the
// pipeline's Close: it closes pooled connections idle for longer than
// idle_conn_timeout and, with health_path, probes every upstream each
// health_interval (the first round at once).
func (p *proxyApp) maintain(ctx context.Context) {
	reap := time.NewTicker(reapInterval(p.opts.idleTimeout))
	defer reap.Stop()
	var probe <-chan time.Time
	if p.opts.healthPath != "" {
		// Probes have their own small pool: they neither wait for nor
		// take a max_conns_per_upstream slot.
		hc := p.std.Clone()
		hc.MaxIdleConnsPerHost = 1
		hc.MaxConnsPerHost = 0
		hc.DisableKeepAlives = false
		hc.ResponseHeaderTimeout = 0 // health_timeout bounds the whole probe
		hc.IdleConnTimeout = 2*p.opts.healthInterval + time.Second
		defer hc.CloseIdleConnections()
		p.probeAll(ctx, hc)
		t := time.NewTicker(p.opts.healthInterval)
		defer t.Stop()
		probe = t.C
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-reap.C:
				p.reap(now)
			case <-probe:
				p.probeAll(ctx, hc)
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-reap.C:
			p.reap(now)
		}
	}
}

// reapInterval is how often idle connections are checked for
// idle_conn_timeout: half of it, within 1 s to 30 s.
func reapInterval(idle time.Duration) time.Duration {
	if idle <= 0 {
		return 30 * time.Second
	}
	return min(max(idle/2, time.Second), 30*time.Second)
}

func (p *proxyApp) reap(now time.Time) {
	for _, up := range p.ups {
		if up.h1 != nil {
			up.h1.reap(now)
		}
	}
}

// probeAll runs one round of health checks, every upstream at once, and
// returns when all are done (each bounded by health_timeout).
func (p *proxyApp) probeAll(ctx context.Context, rt http.RoundTripper) {
	var wg sync.WaitGroup
	for _, up := range p.ups {
		wg.Go(func() { p.probe(ctx, rt, up) })
	}
	wg.Wait()
}

// probe asks up for health_path: a 2xx or 3xx answer within
// health_timeout passes, anything else fails. health_fails failures in a
// row mark the upstream down, health_passes passes up again. Failures of
// the requests themselves are the passive checks' business: the two
// marks are independent, and an upstream takes requests when neither
// says it is down.
func (p *proxyApp) probe(ctx context.Context, rt http.RoundTripper, up *upstream) {
	pctx, cancel := context.WithTimeout(ctx, p.opts.healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, up.healthURL, nil)
	if err != nil {
		p.recordCheck(up, fmt.Errorf("health check request for %s: %w", up.healthURL, err))
		return
	}
	req.Header.Set("User-Agent", "paddock-health-check")
	resp, err := rt.RoundTrip(req)
	if ctx.Err() != nil { // the pipeline is closing: no verdict
		if resp != nil {
			resp.Body.Close()
		}
		return
	}
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			err = fmt.Errorf("GET %s: status %d", up.healthURL, resp.StatusCode)
		}
	}
	p.recordCheck(up, err)
}

// recordCheck applies one probe's verdict (err nil: passed).
func (p *proxyApp) recordCheck(up *upstream, err error) {
	h := &up.check
	h.mu.Lock()
	h.lastAt = p.now()
	var change string
	if err == nil {
		h.state, h.lastErr = "passing", ""
		h.passes++
		h.fails = 0
		if h.passes >= p.opts.healthPasses && up.checkDown.Load() {
			up.checkDown.Store(false)
			change = "up"
		}
	} else {
		h.state, h.lastErr = "failing", err.Error()
		h.fails++
		h.passes = 0
		if h.fails >= p.opts.healthFails && !up.checkDown.Load() {
			up.checkDown.Store(true)
			change = "down"
		}
	}
	fails, passes := h.fails, h.passes
	h.mu.Unlock()
	switch change {
	case "down":
		p.log.Warn("upstream marked down by health check", "upstream", up.name, "failed_checks", fails, "error", err)
	case "up":
		p.log.Info("upstream passes its health check again", "upstream", up.name, "passed_checks", passes)
	}
}
