package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paddock/reload"
)

// Saves that write the config in place (truncate, then write, maybe in
// pieces) must never take the site off its address: the watcher applies
// a file only once two reads agree, one reload builds the settings and
// the pipeline from one snapshot, an automatic reload that would stop
// listening on the running addresses is refused, and a removed bind still
// held is taken back rather than bound again.

// writeInPieces rewrites path in place: truncate, then content in pieces
// of size bytes with pause between them.
func writeInPieces(t *testing.T, path, content string, size int, pause func(i int) time.Duration) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; len(content) > 0; i++ {
		n := min(size, len(content))
		if _, err := f.WriteString(content[:n]); err != nil {
			t.Fatal(err)
		}
		content = content[n:]
		if len(content) > 0 {
			time.Sleep(pause(i))
		}
	}
}

// checkStillServing fails unless the master listens on addr alone and
// serves body there.
func checkStillServing(t *testing.T, m *ctlMaster, addr, body string) {
	t.Helper()
	if got := m.listenerAddrs(t); !slices.Equal(got, []string{addr}) {
		t.Fatalf("listeners %v, want [%s]", got, addr)
	}
	if got := get(t, addr); got != body {
		t.Fatalf("GET = %q, want %q", got, body)
	}
}

// A config rewritten in place in many small pieces, with pauses between
// them from far below the debounce to past it, under load: no request
// fails, the address never changes, and the final content is served. The
// pauses past the debounce let the watcher apply prefixes of the file:
// those that do not load, or that would move the server off its address
// (a bind cut short, no [server:main] yet), are refused.
func TestReloadWritesInPiecesUnderLoad(t *testing.T) {
	const workers = 2
	m := startCtlMaster(t, workers, "p-init")
	reditStopOnCleanup(t, m)
	load := reditLoad(t, m.addr)
	p := startPoller(t, m.addr)
	pauses := []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, reload.Debounce + reload.Settle + 40*time.Millisecond}
	const rounds = 12
	for i := range rounds {
		writeInPieces(t, m.config, ctlConfig(m.addr, workers, fmt.Sprintf("p%d", i)), 9+i%5*4, func(j int) time.Duration {
			return pauses[(i+j)%len(pauses)] / time.Duration(1+j%3)
		})
		time.Sleep(time.Duration(i%3) * reload.Debounce)
	}
	last := fmt.Sprintf("p%d", rounds-1)
	reditWaitBody(t, p, last, time.Now(), reditSetup)
	reditFinish(t, load, p)
	checkStillServing(t, m, m.addr, last)
}

// The file emptied and left so, then half written and left so, then
// whole: the old config serves on its address until the whole file is
// there. Half a file is cut in the [server:main] section (it does not
// load) or, with [server:main] last as in Pyramid's development.ini,
// before it (it would fall back to the default bind: refused).
func TestReloadTruncatedHalfThenWhole(t *testing.T) {
	for _, serverLast := range []bool{false, true} {
		t.Run(fmt.Sprintf("server_last=%v", serverLast), func(t *testing.T) {
			m := startCtlMaster(t, 1, "old")
			reditStopOnCleanup(t, m)
			config := func(body string) string { return ctlConfig(m.addr, 1, body) }
			if serverLast {
				config = func(body string) string { return pyramidConfig(m.addr, 1, body) }
				gen := m.status(t).Generation
				renameSave(t, m.config, config("old"))
				waitFor(t, "the server-last config", reditSetup, func() bool { return m.status(t).Generation == gen+1 })
			}
			gen := m.status(t).Generation
			load := reditLoad(t, m.addr)
			whole := config("new")
			cut := strings.Index(whole, "bind = ") + len("bind = 127.0")
			if serverLast {
				cut = strings.Index(whole, "[server:main]")
			}
			for _, content := range []string{"", whole[:cut]} {
				writeInPieces(t, m.config, content, len(content)+1, nil)
				// Past the debounce and settle, and then some: the watcher
				// looked at it.
				time.Sleep(4 * (reload.Debounce + reload.Settle))
				checkStillServing(t, m, m.addr, "old")
				if st := m.status(t); st.Generation != gen {
					t.Fatalf("generation %d after writing %q, want %d (nothing applied)", st.Generation, content, gen)
				}
			}
			if st := m.status(t); serverLast && (st.LastReload == nil || !strings.Contains(st.LastReload.Error, "not applied")) {
				t.Errorf("last reload %+v after half a file without [server:main], want the refusal (not applied)", st.LastReload)
			}
			writeInPieces(t, m.config, whole, len(whole), nil)
			waitFor(t, "the whole file served", reditSetup, func() bool { return get(t, m.addr) == "new" })
			load.finish(t)
			checkStillServing(t, m, m.addr, "new")
		})
	}
}

// pyramidConfig is a config with [server:main] last, as Pyramid's
// development.ini has it.
func pyramidConfig(addr string, workers int, body string) string {
	return fmt.Sprintf("[app:main]\nuse = egg:paddock#hello\nbody = %s\n\n[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = %d\ngraceful_timeout = 3\n", body, addr, workers)
}

// A config whose [server:main] is the last section written in two pieces
// a few ms apart, hundreds of times, at gaps around the debounce, under
// load: no request fails and the server never leaves its address.
func TestReloadServerLastTwoPieces(t *testing.T) {
	m := startCtlMaster(t, 2, "t-init")
	reditStopOnCleanup(t, m)
	gen := m.status(t).Generation
	renameSave(t, m.config, pyramidConfig(m.addr, 2, "t-init"))
	waitFor(t, "the server-last config", reditSetup, func() bool { return m.status(t).Generation == gen+1 })
	load := reditLoad(t, m.addr)
	p := startPoller(t, m.addr)
	const saves = 200
	gaps := []time.Duration{30, 45, 55, 65, 75, 85, 100}
	for i := range saves {
		whole := pyramidConfig(m.addr, 2, fmt.Sprintf("t%d", i))
		cut := strings.Index(whole, "[server:main]")
		writeInPieces(t, m.config, whole, cut, func(int) time.Duration { return time.Duration(2+i%4) * time.Millisecond })
		time.Sleep(gaps[i%len(gaps)] * time.Millisecond)
	}
	last := fmt.Sprintf("t%d", saves-1)
	reditWaitBody(t, p, last, time.Now(), reditSetup)
	reditFinish(t, load, p)
	checkStillServing(t, m, m.addr, last)
}

// A save that moves the server to another address altogether is not
// applied by the watcher (it could be a file caught half-written); the
// status says why, and `paddock ctl reload` applies it.
func TestReloadLosingEveryAddressNeedsAnExplicitReload(t *testing.T) {
	m := startCtlMaster(t, 1, "here")
	reditStopOnCleanup(t, m)
	gen := m.status(t).Generation
	other := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	renameSave(t, m.config, ctlConfig(other, 1, "there"))
	waitFor(t, "the refused reload in status", reditSetup, func() bool {
		st := m.status(t)
		return st.LastReload != nil && !st.LastReload.OK
	})
	st := m.status(t)
	if !strings.Contains(st.LastReload.Error, "not applied") || !strings.Contains(st.LastReload.Error, m.addr) || !strings.Contains(st.LastReload.Error, "ctl reload") {
		t.Errorf("last reload error %q, want why (not applied, %s) and what to do (ctl reload)", st.LastReload.Error, m.addr)
	}
	if st.Generation != gen {
		t.Errorf("generation %d after a refused reload, want %d", st.Generation, gen)
	}
	checkStillServing(t, m, m.addr, "here")
	if out, errOut, code := ctlRunE2E(t, m.sock, "reload"); code != 0 {
		t.Fatalf("ctl reload: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "the new address to serve", reditSetup, func() bool { return !connRefused(other) && get(t, other) == "there" })
	waitFor(t, "the old address to stop listening", reditSetup, func() bool { return connRefused(m.addr) })
}

// A bind removed and added back while the workers that accepted on it
// still drain (a slow request holds one) gets its socket back: the
// address keeps answering throughout, and still does once the drain is
// over. Binding it anew failed (address in use), and once the drain ended
// the address was shut down.
func TestReloadBindRemovedAndAddedBackWithinDrain(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	started := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(unblock) // runs before upstream.Close
	a := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := func(bind string) string {
		return fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nbind = %s\nworkers = 1\ngraceful_timeout = 30\n\n[app:main]\nuse = egg:paddock#proxy\naddress = %s\n", bind, upstream.URL)
	}
	dir := t.TempDir()
	cfg := dir + "/paste.ini"
	if err := os.WriteFile(cfg, []byte(config(a+" "+b)), 0o644); err != nil {
		t.Fatal(err)
	}
	m := reditStartAt(t, cfg, a, 1)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	slow := startSlowGet(t, client, "http://"+a+"/slow", started, 10*time.Second)
	loadA, loadB := reditLoad(t, a), reditLoad(t, b)
	gen := m.status(t).Generation

	renameSave(t, m.config, config(b))
	waitFor(t, "the bind removal applied", reditSetup, func() bool { return m.status(t).Generation == gen+1 })
	renameSave(t, m.config, config(a+" "+b))
	waitFor(t, "the bind added back", reditSetup, func() bool {
		st := m.status(t)
		return st.Generation == gen+2 || (st.LastReload != nil && !st.LastReload.OK)
	})
	if st := m.status(t); !st.LastReload.OK {
		t.Fatalf("adding the held bind back failed: %s", st.LastReload.Error)
	}
	if got, want := m.listenerAddrs(t), sortedCopy([]string{a, b}); !slices.Equal(got, want) {
		t.Errorf("listeners %v, want %v", got, want)
	}
	time.Sleep(300 * time.Millisecond) // load on both while the old worker drains
	unblock()
	select {
	case r := <-slow:
		if r.err != nil || r.status != 200 {
			t.Errorf("slow request: %d %v", r.status, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not finish")
	}
	// The drain is over: the old worker is gone; a was not shut down.
	m.waitReady(t, 1)
	time.Sleep(300 * time.Millisecond)
	loadA.finish(t)
	loadB.finish(t)
	for _, addr := range []string{a, b} {
		if got := get(t, addr); got != "ok" {
			t.Errorf("GET %s = %q after the drain, want ok", addr, got)
		}
	}
}
