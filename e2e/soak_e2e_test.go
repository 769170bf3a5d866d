package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The long run (issue 8, item 4): reloads and upgrades in a row under
// load. The process tree's open fds, threads and RSS stay flat, no
// request fails, and every retired pipeline generation closes what it
// held: its proxy's upstream connection pool, which the upstream counts.
//
// Default: 20 reloads and 4 upgrades; PADDOCK_SOAK=1: 100 and 20.

// soakConfig serves, through a headers filter that names the generation
// (X-Gen), a proxy to upstream, which answers with that header: a reload
// changes the body, and rebuilds the proxy with a new pool. Each
// generation keeps at most one idle upstream connection per worker
// (max_idle_conns = 1), so a pool left open by a retired generation shows
// as one more upstream connection.
func soakConfig(addr, upstream string, gen int) string {
	return fmt.Sprintf(`[server:main]
use = egg:paddock#http
bind = %s
workers = 2
graceful_timeout = 3
watch_config = false

[pipeline:main]
pipeline = gen upstream

[filter:gen]
use = egg:paddock#headers
request_set = X-Gen: %d

[app:upstream]
use = egg:paddock#proxy
address = %s
max_idle_conns = 1
`, addr, gen, upstream)
}

// soakUpstream answers "gen=N" (the request's X-Gen) and counts its open
// connections.
type soakUpstream struct {
	url    string
	open   atomic.Int64
	opened atomic.Int64
}

func startSoakUpstream(t *testing.T) *soakUpstream {
	t.Helper()
	u := &soakUpstream{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "gen=%s", r.Header.Get("X-Gen"))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			u.open.Add(1)
			u.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

// treeSample is what the process tree holds at one moment.
type treeSample struct {
	events   int
	pids     []int // master first
	fds      int   // each process's fewest over 300 ms, summed
	threads  int
	rssKB    int
	upstream int64 // open connections to the upstream
}

// procStatus reads the Threads and VmRSS (KiB) of pid.
func procStatus(t *testing.T, pid int) (threads, rssKB int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			rssKB, _ = strconv.Atoi(f[1])
		}
	}
	return threads, rssKB
}

func sampleTree(t *testing.T, master, events int, up *soakUpstream) treeSample {
	t.Helper()
	s := treeSample{events: events, pids: append([]int{master}, childrenOf(master)...)}
	for _, pid := range s.pids {
		s.fds += fdCount(t, pid)
		th, rss := procStatus(t, pid)
		s.threads += th
		s.rssKB += rss
	}
	s.upstream = up.open.Load()
	return s
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func (s treeSample) String() string {
	return fmt.Sprintf("after %3d events: master %d + workers %v: %d fds, %d threads, RSS %d KiB; %d upstream connections open",
		s.events, s.pids[0], s.pids[1:], s.fds, s.threads, s.rssKB, s.upstream)
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries and runs for a while")
	}
	reloads, upgrades := 20, 4
	if os.Getenv("PADDOCK_SOAK") == "1" {
		reloads, upgrades = 100, 20
	}
	const (
		workers     = 2
		sampleEvery = 10
		// Growth allowed between the sample after warm-up and the last.
		maxFdGrowth      = 4
		maxThreadGrowth  = 8
		maxRSSGrowthPct  = 30
		keepaliveSetting = 2 * time.Second // the default: idle client connections are closed after it
	)
	v1, v2 := buildUpgradeBinaries(t, t.TempDir())
	up := startSoakUpstream(t)
	gen := 0
	m := startUpgradeMasterConfig(t, v1, func(addr string) string { return soakConfig(addr, up.url, gen) })
	master, version := m.first.Process.Pid, "v1"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	body := func() string {
		resp, err := client.Get("http://" + m.addr + "/")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	load := startLoad(m.addr)
	var (
		samples []treeSample
		ok      int64 // requests answered, over every load run
	)
	// sample pauses the load (its runs are checked for failures one by
	// one) until the server has closed the idle client connections, so
	// the fds counted are the server's own plus one idle upstream
	// connection per worker, then resumes it unless this is the last
	// sample.
	sample := func(events int, last bool) {
		load.finish(t)
		ok += load.OK()
		time.Sleep(keepaliveSetting + 500*time.Millisecond)
		s := sampleTree(t, master, events, up)
		t.Log(s)
		samples = append(samples, s)
		if s.upstream > workers {
			t.Errorf("%d upstream connections open with the load paused; at most one per worker (%d) belongs to the live generation: a retired generation's pool is still open", s.upstream, workers)
		}
		if !last {
			load = startLoad(m.addr)
		}
	}
	time.Sleep(time.Second)
	sample(0, false)

	// The events: an upgrade after every reloads/upgrades reloads.
	var plan []bool // true: an upgrade
	every := max(1, reloads/max(1, upgrades))
	for i := 1; i <= reloads; i++ {
		plan = append(plan, false)
		if i%every == 0 && countTrue(plan) < upgrades {
			plan = append(plan, true)
		}
	}
	for countTrue(plan) < upgrades {
		plan = append(plan, true)
	}
	start := time.Now()
	for i, upgrade := range plan {
		if upgrade {
			// Alternating the two builds.
			bin, want := v2, "v2"
			if version == "v2" {
				bin, want = v1, "v1"
			}
			installBinary(t, bin, m.exe)
			res, out, errOut, code := m.ctlUpgrade(t, m.exe)
			if code != 0 || !res.OK || res.OldPid != master || res.NewVersion != want {
				t.Fatalf("event %d: ctl upgrade exit %d %+v: %s %s", i+1, code, res, out, errOut)
			}
			m.track(res.NewPid)
			m.waitMaster(t, res.NewPid, want)
			old := master
			waitFor(t, fmt.Sprintf("old master %d to exit", old), 20*time.Second, func() bool { return m.exited(old) })
			master, version = res.NewPid, want
		} else {
			// A reload: a new generation, served once the reload is done.
			gen++
			m.writeConfig(t, soakConfig(m.addr, up.url, gen))
			if out, code := m.ctl(t, "reload"); code != 0 {
				t.Fatalf("event %d: ctl reload exit %d: %s", i+1, code, out)
			}
			want := fmt.Sprintf("gen=%d", gen)
			var got string
			waitFor(t, fmt.Sprintf("generation %d to be served", gen), 10*time.Second, func() bool {
				got = body()
				return got == want
			})
		}
		if n := i + 1; n%sampleEvery == 0 || n == len(plan) {
			sample(n, n == len(plan))
		}
	}
	t.Logf("%d reloads and %d upgrades in %v; %d requests answered, none failed; the upstream saw %d connections in all",
		reloads, upgrades, time.Since(start).Round(time.Second), ok, up.opened.Load())

	// The first sample after warm-up against the last.
	base, last := samples[min(1, len(samples)-1)], samples[len(samples)-1]
	t.Logf("growth from %d to %d events: fds %+d (max %d), threads %+d (max %d), RSS %+.1f%% (max %d%%)",
		base.events, last.events, last.fds-base.fds, maxFdGrowth, last.threads-base.threads, maxThreadGrowth,
		100*float64(last.rssKB-base.rssKB)/float64(base.rssKB), maxRSSGrowthPct)
	if last.fds > base.fds+maxFdGrowth {
		t.Errorf("open fds grew from %d to %d", base.fds, last.fds)
	}
	if last.threads > base.threads+maxThreadGrowth {
		t.Errorf("threads grew from %d to %d", base.threads, last.threads)
	}
	if last.rssKB*100 > base.rssKB*(100+maxRSSGrowthPct) {
		t.Errorf("RSS grew from %d KiB to %d KiB", base.rssKB, last.rssKB)
	}
	if len(last.pids) != 1+workers {
		t.Errorf("the last tree is %v, want a master and %d workers", last.pids, workers)
	}
}
