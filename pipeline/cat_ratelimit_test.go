package pipeline

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// newTestRatelimit builds the filter with a clock the test moves.
func newTestRatelimit(t *testing.T, opts map[string]string) (*ratelimit, http.Handler, *time.Duration) {
	t.Helper()
	f, err := parseRatelimit(catConfig(opts))
	if err != nil {
		t.Fatal(err)
	}
	clock := new(time.Duration)
	f.now = func() time.Duration { return *clock }
	return f, f.wrap(okHandler), clock
}

func rlGet(h http.Handler, remote string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return serve(h, req)
}

func TestCatRatelimitOptions(t *testing.T) {
	for _, opts := range []map[string]string{
		{},
		{"rate": ""},
		{"rate": "fast"},
		{"rate": "0"},
		{"rate": "-1"},
		{"rate": "NaN"},
		{"rate": "Inf"},
		{"rate": "10/fortnight"},
		{"rate": "10", "burst": "0"},
		{"rate": "10", "burst": "many"},
		{"rate": "10", "ipv6_prefix": "0"},
		{"rate": "10", "ipv6_prefix": "129"},
		{"rate": "10", "max_keys": "10"},
		{"rate": "10", "key_header": "X Bad"},
		{"rate": "10", "exempt_ips": "*"},
		{"rate": "10", "exempt_ips": "10.0.0.0/33"},
	} {
		_, err := ratelimitFactory().Filter(catConfig(opts))
		wantConfigError(t, err)
	}
	for in, want := range map[string]float64{"10": 10, "10/s": 10, "600/m": 10, "600 / min": 10, "36000/h": 10, "864000/day": 10, "0.5": 0.5} {
		got, err := parseRate(in)
		if err != nil || math.Abs(got-want) > 1e-9 {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	c := catConfig(map[string]string{"rate": "100/m", "burst": "5", "key_header": "x-real-ip", "ipv6_prefix": "56", "max_keys": "1000", "exempt_ips": "10.0.0.0/8 ::1"})
	if _, err := ratelimitFactory().Filter(c); err != nil {
		t.Fatal(err)
	}
	if u := c.Unused(); len(u) != 0 {
		t.Errorf("unused %v", u)
	}
}

func TestCatRatelimitBucket(t *testing.T) {
	_, h, clock := newTestRatelimit(t, map[string]string{"rate": "2", "burst": "3"})
	const a = "192.0.2.1:1000"
	for i := range 3 {
		if rec := rlGet(h, a); rec.Code != 200 {
			t.Fatalf("request %d of the burst: %d", i+1, rec.Code)
		}
	}
	rec := rlGet(h, a)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the burst: %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	// Another client has its own bucket; the port does not matter.
	if rlGet(h, "192.0.2.2:1000").Code != 200 {
		t.Error("another address limited")
	}
	if rlGet(h, "192.0.2.1:2000").Code != 429 {
		t.Error("another port of the same address not limited")
	}
	// Half a second gives one token (rate 2/s).
	*clock += 500 * time.Millisecond
	if rlGet(h, a).Code != 200 {
		t.Error("no token after 0.5 s")
	}
	if rlGet(h, a).Code != 429 {
		t.Error("two tokens after 0.5 s")
	}
	// Refilled, but never above the burst.
	*clock += time.Hour
	for i := range 3 {
		if rlGet(h, a).Code != 200 {
			t.Fatalf("request %d after a long pause refused", i+1)
		}
	}
	if rlGet(h, a).Code != 429 {
		t.Error("bucket holds more than burst")
	}
}

func TestCatRatelimitRetryAfter(t *testing.T) {
	_, h, _ := newTestRatelimit(t, map[string]string{"rate": "1/m"})
	rlGet(h, "192.0.2.1:1")
	rec := rlGet(h, "192.0.2.1:1")
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "60" {
		t.Errorf("got %d Retry-After %q, want 429 and 60", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" || rec.Body.Len() == 0 {
		t.Errorf("429 body: %q %q", rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

func TestCatRatelimitKeys(t *testing.T) {
	t.Run("IPv6 by /64", func(t *testing.T) {
		_, h, _ := newTestRatelimit(t, map[string]string{"rate": "1"})
		rlGet(h, "[2001:db8:1:2::1]:1")
		if rlGet(h, "[2001:db8:1:2:ffff::9]:1").Code != 429 {
			t.Error("same /64 not shared")
		}
		if rlGet(h, "[2001:db8:1:3::1]:1").Code != 200 {
			t.Error("other /64 limited")
		}
	})
	t.Run("IPv4-mapped is IPv4", func(t *testing.T) {
		_, h, _ := newTestRatelimit(t, map[string]string{"rate": "1"})
		rlGet(h, "192.0.2.7:1")
		if rlGet(h, "[::ffff:192.0.2.7]:1").Code != 429 {
			t.Error("mapped address has its own bucket")
		}
	})
	t.Run("ipv6_prefix 128", func(t *testing.T) {
		_, h, _ := newTestRatelimit(t, map[string]string{"rate": "1", "ipv6_prefix": "128"})
		rlGet(h, "[2001:db8::1]:1")
		if rlGet(h, "[2001:db8::2]:1").Code != 200 {
			t.Error("per-address limit shared")
		}
	})
	t.Run("exempt and unix peers", func(t *testing.T) {
		_, h, _ := newTestRatelimit(t, map[string]string{"rate": "1", "exempt_ips": "10.0.0.0/8"})
		for range 5 {
			if rlGet(h, "10.1.2.3:1").Code != 200 || rlGet(h, "@").Code != 200 || rlGet(h, "").Code != 200 {
				t.Fatal("exempt or unix-socket peer limited")
			}
		}
	})
	t.Run("key_header", func(t *testing.T) {
		f, h, _ := newTestRatelimit(t, map[string]string{"rate": "1", "key_header": "X-Forwarded-For", "exempt_ips": "10.9.9.9"})
		const proxy = "127.0.0.1:5000"
		if rlGet(h, proxy, "X-Forwarded-For", "203.0.113.1").Code != 200 {
			t.Fatal("first request limited")
		}
		if rlGet(h, proxy, "X-Forwarded-For", "203.0.113.1").Code != 429 {
			t.Error("same header value not limited")
		}
		if rlGet(h, proxy, "X-Forwarded-For", "203.0.113.2").Code != 200 {
			t.Error("other client behind the proxy limited")
		}
		// The right-most element (what the nearest proxy appended) is
		// the key: a client prepending forged hops gains nothing.
		if rlGet(h, proxy, "X-Forwarded-For", "1.1.1.1, 203.0.113.1").Code != 429 {
			t.Error("forged left-hand hops changed the key")
		}
		if rlGet(h, proxy, "X-Forwarded-For", "9.9.9.9", "X-Forwarded-For", "203.0.113.1").Code != 429 {
			t.Error("last header line not used")
		}
		// Exempt addresses apply to the header's address too.
		for range 3 {
			if rlGet(h, proxy, "X-Forwarded-For", "10.9.9.9").Code != 200 {
				t.Fatal("exempt client limited")
			}
		}
		// Not an address: the text is the key, bounded in length.
		long := fmt.Sprintf("%0300d", 1)
		rlGet(h, proxy, "X-Forwarded-For", long)
		if rlGet(h, proxy, "X-Forwarded-For", long[:ratelimitMaxKeyLen]+"different tail").Code != 429 {
			t.Error("key not cut at its maximum length")
		}
		// Without the header: the peer address.
		if rlGet(h, proxy).Code != 200 || rlGet(h, proxy).Code != 429 {
			t.Error("peer address not used without the header")
		}
		// 203.0.113.1, 203.0.113.2, the long text, the proxy.
		if n := f.size(); n != 4 {
			t.Errorf("%d keys tracked, want 4", n)
		}
	})
}

func TestCatRatelimitBoundedMemory(t *testing.T) {
	f, h, _ := newTestRatelimit(t, map[string]string{"rate": "1", "burst": "2", "max_keys": "64"})
	for i := range 5000 {
		rlGet(h, fmt.Sprintf("[2001:db8:%x::1]:1", i))
	}
	if n := f.size(); n > 64 {
		t.Errorf("%d keys tracked, max_keys 64", n)
	}
	// Buckets idle long enough to be full again are swept.
	f, h, clock := newTestRatelimit(t, map[string]string{"rate": "1", "burst": "2"})
	for i := range 1000 {
		rlGet(h, fmt.Sprintf("[2001:db8:%x::1]:1", i))
	}
	*clock += 2 * time.Minute
	for i := range 1000 {
		rlGet(h, fmt.Sprintf("[2001:db9:%x::1]:1", i))
	}
	if n := f.size(); n != 1000 {
		t.Errorf("%d keys after the idle ones expired, want 1000", n)
	}
}

func TestCatRatelimitConcurrent(t *testing.T) {
	_, h, _ := newTestRatelimit(t, map[string]string{"rate": "1/h", "burst": "100"})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if rlGet(h, "192.0.2.1:1").Code == 200 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ok != 100 {
		t.Errorf("%d requests allowed, want exactly the burst (100)", ok)
	}
}

func TestCatRatelimitNoAllocs(t *testing.T) {
	h := mustFilter(t, ratelimitFactory(), map[string]string{"rate": "1000000"})(okHandler)
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "[2001:db8::1]:1234"
	serve(h, req) // the bucket exists
	assertNoAllocs(t, h, req)
}
