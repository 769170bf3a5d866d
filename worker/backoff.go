package worker

import "time"

// Boot-failure backoff: 1 s after the first failure, doubling, capped at
// 30 s, so a crash loop never spins the CPU (docs/pitfalls.md C1).
const (
	backoffMin = time.Second
	backoffMax = 30 * time.Second
)

// backoff tracks consecutive boot failures.
type backoff struct {
	failures int
	until    time.Time
}

// fail records a boot failure at now and returns the delay before the
// next spawn.
func (b *backoff) fail(now time.Time) time.Duration {
	b.failures++
	d := backoffMin
	for i := 1; i < b.failures && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	b.until = now.Add(d)
	return d
}

// reset forgets the failures (a worker booted).
func (b *backoff) reset() { *b = backoff{} }

// ready reports whether a spawn may happen at now.
func (b *backoff) ready(now time.Time) bool { return !now.Before(b.until) }
