package abuse

import "time"

// DefaultCommandsPerSecond matches config's [limits] commands_per_second.
const DefaultCommandsPerSecond = 100

// Rate is a command rate: PerSecond on average, with bursts of up to Burst
// commands. The zero Rate (PerSecond <= 0) means no limit.
type Rate struct {
	PerSecond float64
	// Burst is the bucket size; 0 means one second's worth (PerSecond, at
	// least 1).
	Burst float64
}

// Bucket is a token bucket for one session. It is not safe for concurrent
// use: a session's commands arrive one after another. A nil *Bucket never
// asks to wait.
type Bucket struct {
	perSecond, burst float64
	tokens           float64
	last             time.Time
	now              Clock
}

// NewBucket returns a full bucket for r, or nil when r has no limit.
func NewBucket(r Rate, now Clock) *Bucket {
	if r.PerSecond <= 0 {
		return nil
	}
	burst := r.Burst
	if burst <= 0 {
		burst = max(r.PerSecond, 1)
	}
	return &Bucket{perSecond: r.PerSecond, burst: burst, tokens: burst, last: now.now(), now: now}
}

// Take spends cost tokens and returns how long the caller must wait before
// going on: zero while the bucket holds enough, else the time until it
// has refilled what is missing. The tokens are spent either way (the
// bucket may go negative), so a caller that waits as told keeps to the
// rate on average, and each wait is bounded by cost/PerSecond plus the
// waits still owed.
func (b *Bucket) Take(cost float64) time.Duration {
	if b == nil {
		return 0
	}
	now := b.now.now()
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(b.burst, b.tokens+elapsed.Seconds()*b.perSecond)
	}
	b.last = now
	b.tokens -= cost
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.perSecond * float64(time.Second))
}
