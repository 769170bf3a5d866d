package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// renameSave writes content the way vim or sed -i save: a new file
// renamed over the old one.
func renameSave(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".paste.ini.swp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// poller is a keep-alive client asking for / in a loop.
type poller struct {
	mu       sync.Mutex
	last     string
	bodies   map[string]int
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

func startPoller(t *testing.T, addr string) *poller {
	p := &poller{bodies: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	go func() {
		defer close(p.done)
		defer client.CloseIdleConnections()
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			resp, err := client.Get("http://" + addr + "/")
			var body string
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				body, err = string(b), rerr
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			p.mu.Lock()
			if err != nil {
				p.failures = append(p.failures, err.Error())
			} else {
				p.last = body
				p.bodies[body]++
			}
			p.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *poller) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *poller) lastBody() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// Edits of the config are applied in place by the watcher: no worker
// restarts, no failed request, a broken edit keeps the old pipeline and
// shows in status, and the next good edit applies.
func TestReloadWatchInPlace(t *testing.T) {
	m := startCtlMaster(t, 2, "A")
	before := pidsOf(m.waitReady(t, 2))
	p := startPoller(t, m.addr)
	waitFor(t, "body A", 5*time.Second, func() bool { return p.lastBody() == "A" })

	renameSave(t, m.config, ctlConfig(m.addr, 2, "B"))
	edited := time.Now()
	waitFor(t, "body B", 2*time.Second, func() bool { return p.lastBody() == "B" })
	t.Logf("B served %s after the edit", time.Since(edited).Round(time.Millisecond))
	// Every response is B from now on: both workers swapped.
	for range 20 {
		if got := get(t, m.addr); got != "B" {
			t.Fatalf("GET = %q after the reload, want B", got)
		}
	}
	st, err := m.client.Status(t.Context())
	if err != nil || st.Generation != 1 || st.LastReload == nil || !st.LastReload.OK {
		t.Fatalf("status after the edit: %+v, %v", st, err)
	}
	if after := pidsOf(m.waitReady(t, 2)); !slices.Equal(before, after) {
		t.Fatalf("worker pids %v, want %v (reloaded in place)", after, before)
	}

	broken := strings.Replace(ctlConfig(m.addr, 2, "C"), "egg:paddock#hello", "egg:paddock#nope", 1)
	renameSave(t, m.config, broken)
	waitFor(t, "the failed reload in status", 3*time.Second, func() bool {
		st, err := m.client.Status(t.Context())
		return err == nil && st.LastReload != nil && !st.LastReload.OK
	})
	out, _, _ := ctlRunE2E(t, m.sock, "status")
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, "paste.ini:8") {
		t.Errorf("status does not show the failed reload at file:line:\n%s", out)
	}
	if got := get(t, m.addr); got != "B" {
		t.Errorf("after a broken edit GET = %q, want B", got)
	}

	renameSave(t, m.config, ctlConfig(m.addr, 2, "C"))
	waitFor(t, "body C", 2*time.Second, func() bool { return p.lastBody() == "C" })
	p.close()
	if after := pidsOf(m.waitReady(t, 2)); !slices.Equal(before, after) {
		t.Fatalf("worker pids %v, want %v (reloaded in place)", after, before)
	}
	st, err = m.client.Status(t.Context())
	if err != nil || st.Generation != 2 || !st.LastReload.OK {
		t.Errorf("status after the good edit: %+v, %v", st, err)
	}
	if len(p.failures) > 0 {
		t.Errorf("%d failed requests during the reloads, first: %s", len(p.failures), p.failures[0])
	}
	t.Logf("responses: %v", p.bodies)
}

// A slow request in flight when the config changes finishes on the old
// pipeline with its 200; new requests get the new one.
func TestReloadWatchSlowRequestSurvives(t *testing.T) {
	started := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			time.Sleep(3 * time.Second)
		}
		fmt.Fprint(w, "upstream "+r.URL.Path)
	}))
	defer upstream.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	head := fmt.Sprintf("[server:main]\nuse = egg:paddock#http\nworkers = 2\ngraceful_timeout = 5\nbind = %s\n\n", addr)
	_, _, pidfile := startPaddock(t, head+"[app:main]\nuse = egg:paddock#proxy\naddress = "+upstream.URL+"\n")
	cfg := filepath.Join(filepath.Dir(pidfile), "paste.ini")
	client := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "the server", 10*time.Second, func() bool {
		resp, err := client.Get("http://" + addr + "/fast")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	done := startSlowGet(t, client, "http://"+addr+"/slow", started, 5*time.Second)
	renameSave(t, cfg, head+"[app:main]\nuse = egg:paddock#hello\nbody = new\n")
	waitFor(t, "the new pipeline", 2*time.Second, func() bool { return get(t, addr) == "new" })
	select {
	case r := <-done:
		if r.err != nil || r.status != 200 || r.body != "upstream /slow" {
			t.Fatalf("slow request: %d %q %v", r.status, r.body, r.err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("the slow request did not finish")
	}
}
