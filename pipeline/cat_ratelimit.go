package pipeline

import (
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ratelimitFactory limits the request rate of each client with a token
// bucket: rate tokens a second, at most burst saved up.
func ratelimitFactory() Factory {
	return Filter("limits each client's request rate (token bucket per address or header value); 429 with Retry-After", newRatelimit)
}

const (
	ratelimitShards         = 32
	ratelimitDefaultMaxKeys = 100000
	ratelimitDefaultV6Bits  = 64
	// ratelimitMaxKeyLen bounds a header value used as a key.
	ratelimitMaxKeyLen = 256
)

type ratelimit struct {
	rate    float64 // tokens per second
	burst   float64
	idle    time.Duration // a bucket left alone this long is full again
	header  string        // canonical key header; "" for the peer address
	v6Bits  int
	exempt  []netip.Prefix
	perShrd int // keys per shard
	seed    maphash.Seed
	epoch   time.Time
	now     func() time.Duration // since epoch; tests replace it
	shards  [ratelimitShards]rlShard
	body    string
}

type rlShard struct {
	mu        sync.Mutex
	buckets   map[string]*rlBucket
	lastSweep time.Duration
}

type rlBucket struct {
	tokens float64
	last   time.Duration
}

func newRatelimit(c *Config) (Middleware, error) {
	f, err := parseRatelimit(c)
	if err != nil {
		return nil, err
	}
	return f.wrap, nil
}

func parseRatelimit(c *Config) (*ratelimit, error) {
	v, ok := c.Lookup("rate")
	if !ok || strings.TrimSpace(v) == "" {
		return nil, c.Errorf("rate", "rate: required: requests a second (10), or per unit (10/s, 600/m, 1000/h)")
	}
	rate, err := parseRate(v)
	if err != nil {
		return nil, c.Wrapf("rate", err, "rate")
	}
	f := &ratelimit{rate: rate, epoch: time.Now(), seed: maphash.MakeSeed()}
	f.now = func() time.Duration { return time.Since(f.epoch) }
	burst, err := c.Int("burst", max(1, int(math.Ceil(rate))))
	if err != nil {
		return nil, err
	}
	if burst < 1 {
		return nil, c.Errorf("burst", "burst: must be at least 1, got %d", burst)
	}
	f.burst = float64(burst)
	f.idle = time.Duration(f.burst / f.rate * float64(time.Second))
	if name := strings.TrimSpace(c.String("key_header", "")); name != "" {
		if !isToken(name) {
			return nil, c.Errorf("key_header", "key_header: %q is not a valid header name", name)
		}
		f.header = textproto.CanonicalMIMEHeaderKey(name)
	}
	if f.v6Bits, err = c.Int("ipv6_prefix", ratelimitDefaultV6Bits); err != nil {
		return nil, err
	}
	if f.v6Bits < 1 || f.v6Bits > 128 {
		return nil, c.Errorf("ipv6_prefix", "ipv6_prefix: want 1 to 128, got %d", f.v6Bits)
	}
	maxKeys, err := c.Int("max_keys", ratelimitDefaultMaxKeys)
	if err != nil {
		return nil, err
	}
	if maxKeys < ratelimitShards {
		return nil, c.Errorf("max_keys", "max_keys: want at least %d, got %d", ratelimitShards, maxKeys)
	}
	f.perShrd = maxKeys / ratelimitShards
	var all bool
	if f.exempt, all, err = catParsePrefixes(c, "exempt_ips", c.List("exempt_ips")); err != nil {
		return nil, err
	}
	if all {
		return nil, c.Errorf("exempt_ips", "exempt_ips: * would exempt every client")
	}
	f.body = "429 Too Many Requests: slow down.\n"
	for i := range f.shards {
		f.shards[i].buckets = make(map[string]*rlBucket)
	}
	return f, nil
}

// parseRate parses "10", "10/s", "600/m", "1000/h" (also "/min",
// "/hour", "/second", "/day") into requests a second.
func parseRate(v string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(v), "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, &rateError{v}
	}
	var per float64
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "", "s", "sec", "second":
		per = 1
	case "m", "min", "minute":
		per = 60
	case "h", "hour":
		per = 3600
	case "d", "day":
		per = 86400
	default:
		return 0, &rateError{v}
	}
	return n / per, nil
}

type rateError struct{ v string }

func (e *rateError) Error() string {
	return "want a positive number of requests a second (10), or per unit (10/s, 600/m, 1000/h), got " + strconv.Quote(e.v)
}

func (f *ratelimit) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [ratelimitMaxKeyLen + 1]byte
		key, ok := f.key(r, buf[:0])
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if wait := f.take(key); wait > 0 {
			// Retry-After in whole seconds, rounded up: after it the
			// next request is allowed.
			secs := int64((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			catWriteText(w, http.StatusTooManyRequests, f.body)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// key appends the request's bucket key to buf: 'h' and the header value,
// or 'a' and the peer address (IPv6 masked to ipv6_prefix). ok is false
// for requests that are not limited: exempt addresses, and peers without
// an IP address (unix sockets) when no header names the client.
func (f *ratelimit) key(r *http.Request, buf []byte) ([]byte, bool) {
	if f.header != "" {
		if v := r.Header[f.header]; len(v) > 0 {
			// The last element of the last line: the hop the proxy in
			// front added (X-Forwarded-For: client, proxy1 -> proxy1's
			// view is what the nearest proxy appended).
			val := v[len(v)-1]
			if i := strings.LastIndexByte(val, ','); i >= 0 {
				val = val[i+1:]
			}
			val = strings.TrimSpace(val)
			if val != "" {
				if a, err := netip.ParseAddr(val); err == nil {
					return f.addrKey(a.Unmap(), buf)
				}
				buf = append(buf, 'h')
				return append(buf, val[:min(len(val), ratelimitMaxKeyLen)]...), true
			}
		}
	}
	a, ok := catRemoteIP(r)
	if !ok {
		return nil, false
	}
	return f.addrKey(a, buf)
}

func (f *ratelimit) addrKey(a netip.Addr, buf []byte) ([]byte, bool) {
	if catPrefixesContain(f.exempt, a) {
		return nil, false
	}
	if a.Is6() && f.v6Bits < 128 {
		if p, err := a.Prefix(f.v6Bits); err == nil {
			a = p.Addr()
		}
	}
	buf = append(buf, 'a')
	return a.AppendTo(buf), true
}

// take removes a token from key's bucket. It returns 0 when the request
// may go on, else how long until a token is available.
func (f *ratelimit) take(key []byte) time.Duration {
	sh := &f.shards[maphash.Bytes(f.seed, key)%ratelimitShards]
	now := f.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[string(key)]
	if b == nil {
		if len(sh.buckets) >= f.perShrd {
			sh.sweep(now, f.idle)
			if len(sh.buckets) >= f.perShrd {
				// Still full: forget an arbitrary client (its next
				// request starts with a full bucket).
				for k := range sh.buckets {
					delete(sh.buckets, k)
					break
				}
			}
		} else if now-sh.lastSweep > max(f.idle, time.Minute) {
			sh.sweep(now, f.idle)
		}
		b = &rlBucket{tokens: f.burst, last: now}
		sh.buckets[string(key)] = b
	} else {
		b.tokens = min(f.burst, b.tokens+(now-b.last).Seconds()*f.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return max(time.Duration((1-b.tokens)/f.rate*float64(time.Second)), 1)
}

// sweep forgets buckets idle long enough to be full: a new bucket would
// be the same.
func (sh *rlShard) sweep(now, idle time.Duration) {
	sh.lastSweep = now
	for k, b := range sh.buckets {
		if now-b.last >= idle {
			delete(sh.buckets, k)
		}
	}
}

// size returns the number of tracked keys (for tests).
func (f *ratelimit) size() int {
	n := 0
	for i := range f.shards {
		f.shards[i].mu.Lock()
		n += len(f.shards[i].buckets)
		f.shards[i].mu.Unlock()
	}
	return n
}
