// Package loadgen is the bounded HTTP load that the end-to-end tests and
// the benchmarks send to a server under test while they reload, upgrade
// or kill it: four keep-alive clients and two that open a fresh
// connection for every request, on one URL, counting what succeeded and
// what failed.
//
// Invariants: it sends only where its owner points it (loopback or a
// unix-socket proxy in this project), each request is bounded by
// RequestTimeout, every client pauses Pause between requests, and Stop
// returns only once every client goroutine has returned.
package loadgen

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// RequestTimeout bounds one request of the load.
const RequestTimeout = 5 * time.Second

// Pause is how long each client waits between two requests.
const Pause = 2 * time.Millisecond

// maxErrors bounds the failures kept for the report.
const maxErrors = 10

// Load is a running load; see the package doc.
type Load struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []string
}

// Start starts the load on url. A request fails on a transport error or
// a status other than 200.
func Start(url string) *Load {
	l := &Load{stop: make(chan struct{})}
	for i := range 6 {
		fresh := i >= 4
		tr := &http.Transport{DisableKeepAlives: fresh, MaxIdleConnsPerHost: 1}
		c := &http.Client{Timeout: RequestTimeout, Transport: tr}
		kind := "keep-alive"
		if fresh {
			kind = "fresh connection"
		}
		l.wg.Go(func() {
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := get(c, url); err != nil {
					l.fail(kind + ": " + err.Error())
				} else {
					l.ok.Add(1)
				}
				time.Sleep(Pause)
			}
		})
	}
	return l
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

func (l *Load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < maxErrors {
		l.errs = append(l.errs, msg)
	}
}

// OK is the number of requests that succeeded so far.
func (l *Load) OK() int64 { return l.ok.Load() }

// Failed is the number of requests that failed so far.
func (l *Load) Failed() int64 { return l.failed.Load() }

// Errors are the first failures, each naming its kind of client.
func (l *Load) Errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// Stop stops the clients and waits until they have returned. It may be
// called once.
func (l *Load) Stop() {
	close(l.stop)
	l.wg.Wait()
}
