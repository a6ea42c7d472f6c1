package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// BackendUtil is how busy one server was over a run.
type BackendUtil struct {
	URL string `json:"url"`
	// BusyFraction is the share of the run the server spent working: from
	// the engine's busy-time counter where it has one (BusyFrom "engine
	// counter", exact), else the share of samples with requests running
	// (BusyFrom "samples", as near as the sampling interval allows); NaN
	// when neither could be read.
	BusyFraction Float  `json:"busy_fraction"`
	BusyFrom     string `json:"busy_from,omitempty"`
	// KV-cache use (0 to 1) and requests running and waiting, over the
	// samples taken during the run.
	KVUsageMean Float `json:"kv_cache_usage_mean"`
	KVUsageMax  Float `json:"kv_cache_usage_max"`
	RunningMean Float `json:"running_mean"`
	WaitingMean Float `json:"waiting_mean"`
	WaitingMax  Float `json:"waiting_max"`
	Samples     int   `json:"samples"`
	// Timeline is the server's state over the run, at most
	// maxTimeline samples (thinned evenly when a run is long).
	Timeline []UtilSample `json:"timeline,omitempty"`
}

// UtilSample is one sample of a server's state: T modeled seconds into the
// run, requests running and waiting, KV-cache use, and the prefix-cache hit
// rate of the prompt tokens looked up since the previous sample (NaN when
// none were).
type UtilSample struct {
	T       float64 `json:"t_s"`
	Running float64 `json:"running"`
	Waiting float64 `json:"waiting"`
	KVUsage float64 `json:"kv_cache_usage"`
	HitRate Float   `json:"hit_rate"`
}

// maxTimeline bounds a server's timeline; past it every other sample is
// dropped and the keeping interval doubles.
const maxTimeline = 600

// Sampler scrapes servers' /metrics at an interval during a run, for
// their KV-cache use, requests running and waiting, and busy time. Start
// it before the run and Stop it after.
type Sampler struct {
	read   Reader
	urls   []string
	cancel context.CancelFunc // nil: fed by Sample (a virtual clock)
	done   chan struct{}

	mu       sync.Mutex
	acc      []utilAcc
	first    []ServerCounters // each server's first counters read
	last     []ServerCounters
	had      []bool // whether first holds a reading
	timeline [][]UtilSample
	keep     int // keep every keep-th sample in the timelines
	n        int // samples taken
}

type utilAcc struct {
	n, busy                       int
	kv, kvMax, run, wait, waitMax float64
}

// DefaultSampleEvery is how often a Sampler scrapes (wall time).
const DefaultSampleEvery = 250 * time.Millisecond

// Reader reads server i's counters and gauges.
type Reader func(ctx context.Context, i int) (ServerCounters, ServerGauges, error)

// NewSampler returns a sampler of the servers named urls, read by read,
// that takes samples when told (Sample): a virtual-time driver's.
func NewSampler(urls []string, read Reader) *Sampler {
	return &Sampler{read: read, urls: urls, keep: 1,
		acc: make([]utilAcc, len(urls)), first: make([]ServerCounters, len(urls)), last: make([]ServerCounters, len(urls)),
		had: make([]bool, len(urls)), timeline: make([][]UtilSample, len(urls))}
}

// StartSampler scrapes each of urls over HTTP now and then every interval
// (wall time) until Stop; scale (wall seconds per modeled second, 0 for 1)
// converts the timelines' times. Unreachable servers are skipped quietly:
// their figures stay NaN.
func StartSampler(ctx context.Context, hc *http.Client, urls []string, every time.Duration, scale float64) *Sampler {
	ctx, cancel := context.WithCancel(ctx)
	if scale <= 0 {
		scale = 1
	}
	s := NewSampler(urls, func(ctx context.Context, i int) (ServerCounters, ServerGauges, error) {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return ScrapeAll(sctx, hc, urls[i])
	})
	s.cancel, s.done = cancel, make(chan struct{})
	start := time.Now()
	now := func() float64 { return time.Since(start).Seconds() / scale }
	s.Sample(ctx, now())
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Sample(ctx, now())
			}
		}
	}()
	return s
}

// Sample reads every server now, t modeled seconds into the run.
func (s *Sampler) Sample(ctx context.Context, t float64) {
	s.mu.Lock()
	s.n++
	record := (s.n-1)%s.keep == 0
	s.mu.Unlock()
	for i := range s.urls {
		c, g, err := s.read(ctx, i)
		if err != nil {
			continue
		}
		s.mu.Lock()
		// A server's first reading is its baseline, even one that was
		// unreachable when the run began.
		had := s.had[i]
		if !had {
			s.first[i], s.had[i] = c, true
		}
		prev := s.last[i]
		s.last[i] = c
		if g.Found {
			a := &s.acc[i]
			a.n++
			a.kv += g.KVUsage
			a.kvMax = max(a.kvMax, g.KVUsage)
			a.run += g.Running
			a.wait += g.Waiting
			a.waitMax = max(a.waitMax, g.Waiting)
			if g.Running > 0 {
				a.busy++
			}
			if record {
				hit := Float(nan())
				if d := c.Sub(prev); had && d.PrefixQueries > 0 {
					hit = Float(d.PrefixHits / d.PrefixQueries)
				}
				s.timeline[i] = append(s.timeline[i], UtilSample{T: t, Running: g.Running, Waiting: g.Waiting, KVUsage: g.KVUsage, HitRate: hit})
			}
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tl := range s.timeline {
		if len(tl) >= maxTimeline {
			s.thin()
			break
		}
	}
}

// thin drops every other sample of every timeline and keeps half as many
// from now on. Called with mu held.
func (s *Sampler) thin() {
	for i, tl := range s.timeline {
		out := tl[:0]
		for k := 0; k < len(tl); k += 2 {
			out = append(out, tl[k])
		}
		s.timeline[i] = out
	}
	s.keep *= 2
}

// Stop takes a last sample at the run's end and returns each server's
// figures over a run of durationS modeled seconds (the busy counter is in
// modeled seconds).
func (s *Sampler) Stop(ctx context.Context, durationS float64) []BackendUtil {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.Sample(ctx, durationS)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BackendUtil, len(s.urls))
	for i, u := range s.urls {
		a := s.acc[i]
		b := BackendUtil{URL: u, Samples: a.n, Timeline: s.timeline[i], BusyFraction: Float(nan()), KVUsageMean: Float(nan()), KVUsageMax: Float(nan()),
			RunningMean: Float(nan()), WaitingMean: Float(nan()), WaitingMax: Float(nan())}
		if a.n > 0 {
			n := float64(a.n)
			b.KVUsageMean, b.KVUsageMax = Float(a.kv/n), Float(a.kvMax)
			b.RunningMean, b.WaitingMean, b.WaitingMax = Float(a.run/n), Float(a.wait/n), Float(a.waitMax)
			b.BusyFraction, b.BusyFrom = Float(float64(a.busy)/n), "samples"
		}
		if d := s.last[i].Sub(s.first[i]); d.HasBusy && durationS > 0 {
			b.BusyFraction, b.BusyFrom = Float(min(1, d.BusySeconds/durationS)), "engine counter"
		}
		out[i] = b
	}
	return out
}
