package control

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestGarbageSlowLorisAndCrowd: garbage bytes, a client whose headers
// never finish and 200 concurrent clients leave the server answering the
// next Status within a second.
func TestGarbageSlowLorisAndCrowd(t *testing.T) {
	c, _ := serve(t, ServerOptions{Controller: newFake()})
	dial := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("unix", c.Path)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}

	garbage := [][]byte{
		{0x16, 0x03, 0x01, 0x00, 0xff, 0x01}, // a TLS hello
		[]byte("\x00\x01\x02\xff\xfe\r\n\r\n"),
		[]byte("GET /v1/status HTTP/9.9\r\n\r\n"),
		[]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
		[]byte("POST /v1/workers/add HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
		[]byte("GET /" + string(make([]byte, 70<<10)) + " HTTP/1.1\r\n\r\n"),
	}
	// Some of these get a 4xx at once, others wait for more header bytes
	// until ReadHeaderTimeout; the checks below run meanwhile.
	var readers sync.WaitGroup
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
		readers.Wait()
	}()
	for _, g := range garbage {
		conn := dial()
		conns = append(conns, conn)
		conn.SetDeadline(time.Now().Add(2 * ReadHeaderTimeout))
		if _, err := conn.Write(g); err != nil {
			t.Fatal(err)
		}
		readers.Go(func() {
			buf := make([]byte, 512)
			conn.Read(buf) // a 4xx or a close; a timeout is also bounded
		})
	}

	loris := dial()
	defer loris.Close()
	if _, err := loris.Write([]byte("GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Go(func() {
			cl := &Client{Path: c.Path, Timeout: 10 * time.Second}
			defer cl.CloseIdleConnections()
			if _, err := cl.Status(t.Context()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Status: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("Status after the abuse: %v", err)
	}
	t.Logf("Status after the abuse: %v", time.Since(start))
}

// BenchmarkStatusRoundTrip is one Client.Status over a real unix socket to
// a Server with a fake Controller, on a kept-alive connection. It reports
// the 99th percentile latency as p99-ms.
func BenchmarkStatusRoundTrip(b *testing.B) {
	c, _ := serve(b, ServerOptions{Controller: newFake()})
	ctx := context.Background()
	durs := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(percentile(durs, 0.99).Seconds()*1e3, "p99-ms")
}

// percentile is the q-quantile of ds (nearest rank); it sorts ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
