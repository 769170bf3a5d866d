package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
)

// handlerGen is one generation of a worker's pipeline. refs counts the
// requests running on it, plus one while it is the current generation;
// the pipeline is closed when the count drops to zero.
type handlerGen struct {
	gen     int
	handler http.Handler
	closer  io.Closer // the pipeline; nil holds nothing
	refs    atomic.Int64
	once    sync.Once
	closed  chan struct{} // closed once closer has been closed
	onClose func(gen int, err error)
}

func newHandlerGen(gen int, h http.Handler, c io.Closer, onClose func(int, error)) *handlerGen {
	g := &handlerGen{gen: gen, handler: h, closer: c, closed: make(chan struct{}), onClose: onClose}
	g.refs.Store(1) // the current generation's own reference
	return g
}

// acquire takes a reference unless the generation is already retired.
func (g *handlerGen) acquire() bool {
	for {
		n := g.refs.Load()
		if n <= 0 {
			return false
		}
		if g.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one closes the pipeline.
func (g *handlerGen) release() {
	if g.refs.Add(-1) != 0 {
		return
	}
	g.once.Do(func() {
		var err error
		if g.closer != nil {
			err = g.closer.Close()
		}
		if g.onClose != nil {
			g.onClose(g.gen, err)
		}
		close(g.closed)
	})
}

// swapHandler serves every request on the current generation; Swap
// replaces it atomically. A request keeps the generation it started on
// to its end (in-flight requests finish on the old graph); the next
// request, on any connection, gets the new one.
type swapHandler struct {
	cur atomic.Pointer[handlerGen]
}

func newSwapHandler(g *handlerGen) *swapHandler {
	s := &swapHandler{}
	s.cur.Store(g)
	return s
}

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for {
		g := s.cur.Load()
		if g.acquire() {
			defer g.release()
			g.handler.ServeHTTP(w, r)
			return
		}
		if s.cur.Load() == g {
			// Closed and not replaced: the worker is past its end.
			http.Error(w, "server is stopping", http.StatusServiceUnavailable)
			return
		}
		// g was swapped out and drained between Load and acquire: the
		// pointer is already the new generation.
	}
}

// Swap makes g current and returns the old generation, which closes
// once its last in-flight request is done.
func (s *swapHandler) Swap(g *handlerGen) *handlerGen {
	old := s.cur.Swap(g)
	old.release()
	return old
}

// Current is the generation new requests get.
func (s *swapHandler) Current() *handlerGen { return s.cur.Load() }

// Close retires the current generation (at exit, once serving is over).
func (s *swapHandler) Close() { s.cur.Load().release() }

// ConfigDigest is the sha256 that names a config generation: over every
// file of the load (pipeline.Pipeline.Files, in order), its path and the
// sha256 of its content. The master sends it with reload; the worker
// computes it over what it loaded and refuses a mismatch, so a worker
// never swaps to a file that changed after the master validated it.
func ConfigDigest(files []string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("worker: digest %s: %w", f, err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(h, "%s\x00%x\n", f, sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ContentsDigest is ConfigDigest over contents already read (a load's
// pipeline.Pipeline.Contents), so the digest names exactly the bytes
// that were validated.
func ContentsDigest(files []string, contents map[string][]byte) (string, error) {
	h := sha256.New()
	for _, f := range files {
		data, ok := contents[f]
		if !ok {
			return "", fmt.Errorf("worker: digest %s: not among the loaded contents", f)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(h, "%s\x00%x\n", f, sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
