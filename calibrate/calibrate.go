// Package calibrate fits the embedded engine's step-time profile to a
// running OpenAI-compatible server: it sends planned probes (lone prompts
// of growing length for prefill, concurrent decodes at several batch sizes,
// long contexts for the KV term), measures each in the server's modeled
// time, fits the profile's coefficients by least squares on relative
// error, and validates the fit on a held-out request stream replayed on
// the server and on the engine's virtual clock.
package calibrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
	"github.com/wfsched/wfsched/tokenizer"
)

// Config is a calibration.
type Config struct {
	Client *client.Client
	// Like gives what the probes cannot measure: the scheduler limits,
	// KV capacity and served model of the profile written, and for a
	// mixture of experts the share of experts a token is routed to (the
	// fit then measures the experts' weight reads). Zero: the default
	// profile's.
	Like sim.Profile
	// MaxPrompt bounds the prompts probed (default 8192, at most the
	// profile's max_num_batched_tokens, so a prompt prefills in one step).
	MaxPrompt int
	// Repeats is how many times each probe runs (default 2).
	Repeats int
	// ValidationRequests is the held-out stream's size (default 40; 0 after
	// defaults: no validation).
	ValidationRequests int
	Seed               uint64
	// Progress, if set, is told of each probe.
	Progress func(string)
}

// Probe is one measurement: a step shape and the time it took.
type Probe struct {
	// Kind is decode (a steady decode step, from the gaps between output
	// chunks) or ttft (a lone request's time to first token: its prefill
	// step and the overhead beside it).
	Kind string `json:"kind"`
	// Tokens, Context and Seqs are the step's shape (sim.Profile.StepTime).
	Tokens  int     `json:"tokens"`
	Context int     `json:"context"`
	Seqs    int     `json:"seqs"`
	US      float64 `json:"measured_us"` // modeled microseconds
	FitUS   float64 `json:"fitted_us"`
	// Sent is how many requests a decode probe sent at once; Seqs is how
	// many the server ran at once (fewer when its vllm:num_requests_running
	// said so: its max_num_seqs).
	Sent int `json:"sent,omitempty"`
}

// Result is a calibration's outcome.
type Result struct {
	Profile sim.Profile `json:"profile"`
	Probes  []Probe     `json:"probes"`
	// OverheadUS is the time a lone request waits beyond its prefill step
	// (the HTTP round trip, tokenizing, the first chunk's flush): TTFT of a
	// short prompt less a decode step of the same shape.
	OverheadUS float64 `json:"overhead_us"`
	// RMSRelative is the fit's root-mean-square relative residual.
	RMSRelative float64 `json:"rms_relative_residual"`
	// StdErr is each coefficient's standard error relative to its value
	// (0.05: ±5%), from the residuals: the fit's uncertainty.
	StdErr     map[string]float64 `json:"relative_standard_errors"`
	Validation *Validation        `json:"validation,omitempty"`
	Warnings   []string           `json:"warnings,omitempty"`
}

// Defaults fills what the config leaves unset.
func (c *Config) defaults() {
	if c.Like.Name == "" {
		c.Like, _ = sim.BuiltinProfile(sim.DefaultProfile)
	}
	if c.MaxPrompt <= 0 {
		c.MaxPrompt = 8192
	}
	c.MaxPrompt = min(c.MaxPrompt, c.Like.MaxNumBatchedTokens)
	if c.Repeats <= 0 {
		c.Repeats = 2
	}
}

// ErrNotLike is returned when the server does not stream with usage as vLLM does.
var ErrNotLike = errors.New("the server does not answer as vLLM does")

// Run calibrates.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	enc := tokenizer.MustDefault()
	m := &measurer{cfg: cfg, enc: enc, rng: rand.New(rand.NewPCG(cfg.Seed, 0x63616c)), running: newRunning(ctx, cfg.Client.BaseURL())}
	var probes []Probe
	// Decode at batch 1, short prompt: a step's floor; its first token is
	// a short prefill's (the overhead beside it).
	one, err := m.batch(ctx, 1, 32, 48)
	if err != nil {
		return nil, err
	}
	probes = append(probes, one.decode, Probe{Kind: "ttft", Tokens: one.prompt, Context: one.prompt, Seqs: 1, US: one.ttft})
	// Decode at growing batches (short contexts), and at long contexts.
	for _, b := range []struct{ seqs, prompt int }{{4, 32}, {16, 32}, {64, 32}, {8, 2048}, {4, min(6144, cfg.Like.MaxModelLen/2)}} {
		r, err := m.batch(ctx, b.seqs, b.prompt, 32)
		if err != nil {
			return nil, err
		}
		probes = append(probes, r.decode)
	}
	// Prefill: lone prompts of growing length, one output token, the
	// longest still one step with the chat template's tokens.
	var lengths []int
	for l := 512; l < cfg.MaxPrompt-64; l *= 2 {
		lengths = append(lengths, l)
	}
	for _, l := range append(lengths, cfg.MaxPrompt-64) {
		r, err := m.batch(ctx, 1, l, 1)
		if err != nil {
			return nil, err
		}
		probes = append(probes, Probe{Kind: "ttft", Tokens: r.prompt, Context: r.prompt, Seqs: 1, US: r.ttft})
	}
	p, overhead, rms, stderr, err := fit(probes, cfg.Like)
	if err != nil {
		return &Result{Probes: probes}, err
	}
	for i := range probes {
		probes[i].FitUS = fitted(p, overhead, probes[i])
	}
	res := &Result{Profile: p, Probes: probes, OverheadUS: overhead, RMSRelative: rms, StdErr: stderr}
	if h := cfg.Like.Hardware; h != nil {
		// A fit faster than the hardware named can be (a cached prompt, a
		// server that is not what --like says) is reported, not kept
		// quiet.
		if err := sim.CheckPhysics(p, *h); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the fit beats the physics of %s: %v; is the server that hardware and model, and are the probes' prompts uncached?", cfg.Like.Name, err))
		}
	}
	if cfg.ValidationRequests > 0 {
		v, err := validate(ctx, m, p, overhead)
		if err != nil {
			return nil, err
		}
		res.Validation = v
	}
	return res, nil
}

type measurer struct {
	cfg     Config
	enc     *tokenizer.Encoder
	rng     *rand.Rand
	running *running // nil: the server serves no vLLM metrics
	n       uint64
	mu      sync.Mutex
}

// prompt is a fresh prompt of about n tokens (fresh: no prefix cache hit).
func (m *measurer) prompt(n int) string {
	m.mu.Lock()
	m.n++
	k := m.n
	m.mu.Unlock()
	return fmt.Sprintf("probe %d %d. ", m.cfg.Seed, k) + m.enc.Filler(max(1, n-8), m.cfg.Seed^k)
}

type batchResult struct {
	decode Probe
	ttft   float64 // mean TTFT, modeled us
	prompt int     // mean prompt tokens the server counted
}

// batch sends seqs requests at once (prompt tokens each, output tokens
// out, ignoring EOS), Repeats times, and measures their steady decode step
// (the gaps after every request of the batch has begun decoding) and their
// TTFT.
func (m *measurer) batch(ctx context.Context, seqs, prompt, out int) (batchResult, error) {
	var gaps, ttfts, prompts []float64
	ran := seqs // the batch the server ran, by its metrics where served
	for range m.cfg.Repeats {
		if m.cfg.Progress != nil {
			m.cfg.Progress(fmt.Sprintf("%d request(s) of %d prompt tokens, %d output tokens", seqs, prompt, out))
		}
		results := make([]scheduler.CallResult, seqs)
		var stop func() int
		if m.running != nil && seqs > 1 {
			stop = m.running.watch(ctx, 10*time.Millisecond)
		}
		var wg sync.WaitGroup
		for i := range seqs {
			text := m.prompt(prompt)
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = m.cfg.Client.Complete(ctx, scheduler.Call{Messages: []scheduler.Message{{Role: "user", Content: text}}, MaxTokens: out, IgnoreEOS: true})
			}()
		}
		wg.Wait()
		if stop != nil {
			if most := stop(); most > 0 && most < seqs {
				ran = min(ran, most)
			}
		}
		if err := ctx.Err(); err != nil {
			return batchResult{}, err
		}
		for _, r := range results {
			if r.Err != nil {
				return batchResult{}, r.Err
			}
			if !r.UsageReported || r.CompletionTokens != out {
				return batchResult{}, fmt.Errorf("%w: a request for %d output tokens (ignore_eos) reported %d, usage reported: %v; calibrate needs streaming with usage",
					ErrNotLike, out, r.CompletionTokens, r.UsageReported)
			}
			scale := r.TimeScale
			if scale <= 0 {
				scale = 1
			}
			ttfts = append(ttfts, float64(r.TTFT.Microseconds())/scale)
			prompts = append(prompts, float64(r.PromptTokens))
			// The steady gaps: past the first few, while all run.
			skip := min(len(r.ITL), 3)
			for _, g := range r.ITL[skip:max(skip, len(r.ITL)-1)] {
				gaps = append(gaps, float64(g.Microseconds())/scale)
			}
		}
	}
	res := batchResult{ttft: median(ttfts), prompt: int(mean(prompts))}
	if out > 1 {
		if len(gaps) == 0 {
			return res, fmt.Errorf("%w: no gaps between output chunks: is the server streaming token by token?", ErrNotLike)
		}
		// The context the batch reads in a mid-run step.
		res.decode = Probe{Kind: "decode", Tokens: ran, Seqs: ran, Context: ran * (res.prompt + out/2), US: median(gaps), Sent: seqs}
	}
	return res, nil
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(max(1, len(xs)))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// fitted is what the profile and overhead predict for a probe, in us.
func fitted(p sim.Profile, overheadUS float64, pr Probe) float64 {
	us := float64(p.StepTime(pr.Tokens, pr.Context, pr.Seqs)) / float64(time.Microsecond)
	if pr.Kind == "ttft" {
		us += overheadUS
	}
	return us
}

// Fit fits t_fixed, t_weights, c_tok, c_kv and c_req (and t_experts when
// like is a mixture of experts), and the overhead a request's first token
// carries beside its prefill step, to the probes by least squares on
// relative error. Each probe is taken on the branch of the step's max it
// falls on (decided by the previous fit, until no probe changes branch);
// coefficients are kept non-negative. like gives the rest of the profile.
func Fit(probes []Probe, like sim.Profile) (sim.Profile, float64, float64, error) {
	p, ovh, rms, _, err := fit(probes, like)
	return p, ovh, rms, err
}

// fit is Fit, with each fitted coefficient's standard error relative to
// its value (from the residuals and the fit's design; 0 for one clamped
// at zero), by the profile's JSON names.
func fit(probes []Probe, like sim.Profile) (sim.Profile, float64, float64, map[string]float64, error) {
	const (
		fixed = iota
		weights
		tok
		kv
		req
		overhead
		experts
	)
	n := 6
	if like.ExpertShare > 0 {
		n = 7
	}
	weightsOf := func(x []float64, tokens int) float64 {
		w := x[weights]
		if n > experts {
			w += x[experts] * sim.Touched(tokens, like.ExpertShare)
		}
		return w
	}
	// Start with decode steps weight-bound, first tokens of prompts over
	// a thousand tokens compute-bound.
	compute := make([]bool, len(probes))
	for i, p := range probes {
		compute[i] = p.Kind == "ttft" && p.Tokens > 1000
	}
	var x []float64
	var free []bool
	var rows [][]float64
	for round := 0; round < 20; round++ {
		free = make([]bool, n)
		for i := range free {
			free[i] = true
		}
		rows = make([][]float64, len(probes))
		ys := make([]float64, len(probes))
		for i, p := range probes {
			r := make([]float64, n)
			r[fixed], r[kv], r[req] = 1, float64(p.Context), float64(p.Seqs)
			if p.Kind == "ttft" {
				r[overhead] = 1
			}
			if compute[i] {
				r[tok] = float64(p.Tokens)
			} else {
				r[weights] = 1
				if n > experts {
					r[experts] = sim.Touched(p.Tokens, like.ExpertShare)
				}
			}
			// Relative error: each row divided by what it measured.
			w := 1 / math.Max(p.US, 1)
			for j := range r {
				r[j] *= w
			}
			rows[i], ys[i] = r, p.US*w
		}
		var err error
		for {
			if x, err = leastSquares(rows, ys, free); err != nil && free[fixed] {
				// No probe separates the per-step overhead from the weight
				// reads: their sum is measured, as t_weights.
				free[fixed] = false
				continue
			}
			if err != nil {
				return sim.Profile{}, 0, 0, nil, err
			}
			neg := -1
			for j, v := range x {
				if free[j] && v < 0 && (neg < 0 || v < x[neg]) {
					neg = j
				}
			}
			if neg < 0 {
				break
			}
			free[neg] = false // clamp at zero, refit the rest
		}
		changed := false
		for i, p := range probes {
			if c := x[tok]*float64(p.Tokens) > weightsOf(x, p.Tokens); c != compute[i] {
				compute[i], changed = c, true
			}
		}
		if !changed {
			break
		}
	}
	p := like
	p.Name = "calibrated"
	p.TFixed, p.TWeights, p.CTok, p.CKV, p.CReq = sim.Micros(x[fixed]), sim.Micros(x[weights]), sim.Micros(x[tok]), sim.Micros(x[kv]), sim.Micros(x[req])
	p.CComm = 0 // measured within c_tok and c_req
	p.TExperts = 0
	if n > experts {
		p.TExperts = sim.Micros(x[experts])
	}
	p.Hardware = nil
	ss := 0.0
	for _, pr := range probes {
		got := fitted(p, x[overhead], pr)
		ss += (got - pr.US) * (got - pr.US) / (pr.US * pr.US)
	}
	rms := math.Sqrt(ss / float64(len(probes)))
	if err := p.Validate(); err != nil {
		return p, x[overhead], rms, nil, fmt.Errorf("the fitted profile is not usable (%v): the probes do not determine it", err)
	}
	// Standard errors: the residual variance over the degrees of freedom
	// left, times the diagonal of the normal matrix's inverse.
	names := []string{"t_fixed_us", "t_weights_us", "c_tok_us", "c_kv_us", "c_req_us", "overhead_us", "t_experts_us"}
	k := 0
	for _, f := range free {
		if f {
			k++
		}
	}
	stderr := map[string]float64{}
	if dof := len(probes) - k; dof > 0 {
		sigma2 := ss / float64(dof)
		inv := normalInverse(rows, free)
		for j := range n {
			if free[j] && x[j] > 0 {
				stderr[names[j]] = math.Sqrt(sigma2*inv[j]) / x[j]
			} else {
				stderr[names[j]] = 0
			}
		}
	}
	return p, x[overhead], rms, stderr, nil
}

// normalInverse returns the diagonal of (AᵀA)⁻¹ over the free columns (0
// for the others).
func normalInverse(a [][]float64, free []bool) []float64 {
	diag := make([]float64, len(free))
	for j, f := range free {
		if !f {
			continue
		}
		// Solve (AᵀA) z = e_j by least squares on the augmented system:
		// the j-th component of z is the j-th diagonal entry.
		e := make([]float64, len(free))
		e[j] = 1
		z, err := solveNormal(a, e, free)
		if err == nil {
			diag[j] = z[j]
		}
	}
	return diag
}

// leastSquares solves min |A x - y| over the free columns (the others 0)
// through the normal equations.
func leastSquares(a [][]float64, y []float64, free []bool) ([]float64, error) {
	rhs := make([]float64, len(free))
	for j := range free {
		for r := range a {
			rhs[j] += a[r][j] * y[r]
		}
	}
	return solveNormal(a, rhs, free)
}

// solveNormal solves (AᵀA) x = rhs over the free columns (the others 0),
// by Gaussian elimination with partial pivoting.
func solveNormal(a [][]float64, rhs []float64, free []bool) ([]float64, error) {
	var cols []int
	for j, f := range free {
		if f {
			cols = append(cols, j)
		}
	}
	k := len(cols)
	m := make([][]float64, k)
	for i := range m {
		m[i] = make([]float64, k+1)
		for j := range k {
			for r := range a {
				m[i][j] += a[r][cols[i]] * a[r][cols[j]]
			}
		}
		m[i][k] = rhs[cols[i]]
	}
	for c := range k {
		p := c
		for r := c + 1; r < k; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		if math.Abs(m[p][c]) < 1e-18 {
			return nil, fmt.Errorf("the probes do not determine the coefficients (a singular fit)")
		}
		m[c], m[p] = m[p], m[c]
		for r := range k {
			if r != c {
				f := m[r][c] / m[c][c]
				for j := c; j <= k; j++ {
					m[r][j] -= f * m[c][j]
				}
			}
		}
	}
	x := make([]float64, len(free))
	for i, c := range cols {
		x[c] = m[i][k] / m[i][i]
	}
	return x, nil
}
