package e2e

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"paddock/control"
)

// listenerAddrs is GET /v1/listeners as a sorted list of addresses.
func (m *ctlMaster) listenerAddrs(t *testing.T) []string {
	t.Helper()
	ls, err := m.client.Listeners(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Addr)
	}
	slices.Sort(out)
	return out
}

func connRefused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// Editing workers and bind in the file is applied live under load: a
// second port opens and both serve, more workers start, a removed port
// stops listening once the workers rolled, and a port that cannot be
// bound fails the reload (file:line in status) and changes nothing.
func TestReloadBindAndWorkers(t *testing.T) {
	m := startCtlMaster(t, 1, "A")
	first := m.addr
	second := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	loadFirst := startLoad(first)

	renameSave(t, m.config, ctlConfig(first+" "+second, 2, "B"))
	waitFor(t, "the second port to serve B", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", second, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return get(t, second) == "B"
	})
	m.waitReady(t, 2)
	if got := get(t, first); got != "B" {
		t.Errorf("first port serves %q after the edit, want B", got)
	}
	if got, want := m.listenerAddrs(t), []string{first, second}; !slices.Equal(got, sortedCopy(want)) {
		t.Errorf("listeners %v, want %v", got, want)
	}
	loadSecond := startLoad(second)
	time.Sleep(300 * time.Millisecond)
	// Clients of the first port go away before it is removed.
	loadFirst.finish(t)

	renameSave(t, m.config, ctlConfig(second, 2, "C"))
	waitFor(t, "the first port to stop listening", 10*time.Second, func() bool { return connRefused(first) })
	if got := get(t, second); got != "C" {
		t.Errorf("second port serves %q, want C", got)
	}
	if got := m.listenerAddrs(t); !slices.Equal(got, []string{second}) {
		t.Errorf("listeners %v, want [%s]", got, second)
	}
	gen := m.status(t).Generation

	// A port somebody else holds: the reload fails, nothing changes.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// The edit also asks for 3 workers: a failed reload changes nothing,
	// the worker count included.
	renameSave(t, m.config, ctlConfig(second+" "+busy.Addr().String(), 3, "D"))
	waitFor(t, "the failed reload in status", 5*time.Second, func() bool {
		st := m.status(t)
		return st.LastReload != nil && !st.LastReload.OK
	})
	st := m.status(t)
	if !strings.Contains(st.LastReload.Error, "paste.ini:3") || !strings.Contains(st.LastReload.Error, "address already in use") {
		t.Errorf("last_reload error %q, want paste.ini:3 and address already in use", st.LastReload.Error)
	}
	if st.Generation != gen {
		t.Errorf("generation %d after a failed reload, want %d", st.Generation, gen)
	}
	if st.Workers.Target != 2 {
		t.Errorf("worker target %d after a failed reload, want 2", st.Workers.Target)
	}
	if got := get(t, second); got != "C" {
		t.Errorf("second port serves %q after the failed reload, want C", got)
	}
	// The port was given back: the removed bind can come back.
	renameSave(t, m.config, ctlConfig(second+" "+first, 2, "E"))
	waitFor(t, "the first port to serve E again", 10*time.Second, func() bool {
		return !connRefused(first) && get(t, first) == "E"
	})
	loadSecond.finish(t)
}

func (m *ctlMaster) status(t *testing.T) control.Status {
	t.Helper()
	st, err := m.client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
