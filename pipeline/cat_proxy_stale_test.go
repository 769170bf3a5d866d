package pipeline

import (
	"errors"
	"testing"
	"time"
)

// A request sent before its upstream was marked down and answered after
// (it was in flight when the upstream died) must not bring the upstream
// back; the trial request, sent after the mark, does.
func TestCatProxyStaleSuccessKeepsDown(t *testing.T) {
	p, _ := newProxy(t, map[string]string{"upstreams": "http://127.0.0.1:1 http://127.0.0.1:2", "fail_threshold": "1", "fail_timeout": "60"})
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	up := p.ups[1]

	sentBefore := now.UnixNano()
	now = now.Add(time.Millisecond)
	p.failed(up, errors.New("connection refused")) // marked down
	if st := upstreamStatus(p, up.name); st.Healthy {
		t.Fatalf("after the failure: %+v, want down", st)
	}
	now = now.Add(time.Millisecond)
	p.succeeded(up, sentBefore)
	if st := upstreamStatus(p, up.name); st.Healthy {
		t.Fatalf("a success sent before the mark brought it back: %+v", st)
	}
	p.succeeded(up, now.UnixNano()) // sent after the mark: the trial
	if st := upstreamStatus(p, up.name); !st.Healthy || st.Failures != 0 {
		t.Fatalf("after a success sent after the mark: %+v, want up", st)
	}
}
