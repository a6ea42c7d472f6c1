package calibrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/sim"
)

// TestRecoversSecretProfiles calibrates wfsched sim engines serving
// profiles the fit is not given (only their limits and, for a mixture of
// experts, the share of experts a token is routed to), on the wall clock,
// and compares the fitted step times with the secret profile's.
func TestRecoversSecretProfiles(t *testing.T) {
	// It measures servers on the wall clock: the race detector's
	// slowdown of the server's tokenizing shows as prefill time (an 8k
	// prompt 8% slower), so it runs without it, alone, from .ci/run.
	if testing.Short() || raceEnabled {
		t.Skip("measures servers on the wall clock (about 40 s): run without -race or -short, as .ci/run does")
	}
	for _, tc := range []struct {
		name    string
		maxSeqs int // a server that runs at most this many at once (0: the profile's)
	}{{"h100-llama3.1-8b", 0}, {"h200-llama3.1-70b-tp4-fp8", 0}, {"h100-qwen3-30b-a3b", 0}, {"h100-llama3.1-8b", 16}} {
		name := tc.name
		if tc.maxSeqs > 0 {
			name += fmt.Sprintf(" max_num_seqs %d", tc.maxSeqs)
		}
		t.Run(name, func(t *testing.T) {
			secret, err := sim.LoadProfile(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if tc.maxSeqs > 0 {
				secret.MaxNumSeqs = tc.maxSeqs
			}
			ctx, cl := serve(t, sim.Config{Profile: secret, Seed: 3})
			like := secret
			like.TFixed, like.TWeights, like.CTok, like.CKV, like.CReq, like.TExperts, like.CComm = 0, 0, 0, 0, 0, 0, 0
			res, err := Run(ctx, Config{Client: cl, Like: like, ValidationRequests: 60, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			p := res.Profile
			for _, pr := range res.Probes {
				if pr.Sent > secret.MaxNumSeqs && pr.Seqs != secret.MaxNumSeqs {
					t.Errorf("a probe sent %d requests to a server running %d at once, and was taken as a batch of %d", pr.Sent, secret.MaxNumSeqs, pr.Seqs)
				}
			}
			t.Logf("fitted: t_fixed %.0f, t_weights %.0f, c_tok %.2f, c_kv %.4f, c_req %.2f, t_experts %.0f (secret: %.0f, %.0f, %.2f, %.4f, %.2f, %.0f); rms %.3f; overhead %.0f us",
				float64(p.TFixed), float64(p.TWeights), float64(p.CTok), float64(p.CKV), float64(p.CReq), float64(p.TExperts),
				float64(secret.TFixed), float64(secret.TWeights), float64(secret.CTok+secret.CComm), float64(secret.CKV), float64(secret.CReq), float64(secret.TExperts), res.RMSRelative, res.OverheadUS)
			t.Logf("relative standard errors: %v", res.StdErr)
			// The step times that matter, within 5%: decode alone and at
			// batch 64, long-context decode, an 8k and a 2k prefill.
			for _, s := range [][3]int{{1, 1000, 1}, {64, 64 * 600, 64}, {8, 8 * 4096, 8}, {8192, 8192, 1}, {2048, 2048, 1}} {
				want, got := secret.StepTime(s[0], s[1], s[2]).Seconds(), p.StepTime(s[0], s[1], s[2]).Seconds()
				if math.Abs(got-want) > 0.05*want {
					t.Errorf("step %v: fitted %.4g s, secret %.4g s (%+.1f%%)", s, got, want, 100*(got-want)/want)
				}
			}
			v := res.Validation
			for _, k := range []string{"ttft", "itl", "e2e"} {
				m := v.Metrics[k]
				t.Logf("validation %s: real mean %.1f ms p90 %.1f; simulated mean %.1f p90 %.1f (errors %.1f%%, %.1f%%); per request, median error %.1f%%",
					k, m.RealMean, m.RealP90, m.SimMean, m.SimP90, m.MeanErr, m.P90Err, m.MedianRequestErr)
			}
			// Means within 5%; p90s within 15%: a request that arrives at a
			// step's boundary joins this step or the next by the server's
			// timing jitter, and p90 TTFT (of 60 requests) moved by up to 11%
			// from run to run on this 2-core machine, about one step.
			for k, m := range v.Metrics {
				if m.MeanErr > 5 || m.P90Err > 15 {
					t.Errorf("validation: %s's mean off by %.1f%%, p90 by %.1f%%", k, m.MeanErr, m.P90Err)
				}
			}
		})
	}
}

// TestFitExactAndNoisy: probes computed from a profile are fitted back to
// its coefficients (exact data), and with 3% noise on every probe the
// fitted step times stay within 5% of the truth.
func TestFitExactAndNoisy(t *testing.T) {
	for _, name := range []string{"h100-llama3.1-8b", "h200-llama3.1-70b-tp4-fp8", "h100-qwen3-30b-a3b"} {
		truth, err := sim.LoadProfile(name)
		if err != nil {
			t.Fatal(err)
		}
		truth.CReq += truth.CComm // a communication cost per token is c_tok's and c_req's to a fit
		truth.CTok += truth.CComm
		truth.CComm = 0
		const overhead = 700.0
		var probes []Probe
		for _, b := range [][2]int{{1, 80}, {4, 80}, {16, 80}, {64, 80}, {8, 2100}, {4, 4200}} {
			probes = append(probes, Probe{Kind: "decode", Tokens: b[0], Seqs: b[0], Context: b[0] * b[1]})
		}
		for _, l := range []int{50, 512, 1024, 2048, 4096, 8128} {
			probes = append(probes, Probe{Kind: "ttft", Tokens: l, Context: l, Seqs: 1})
		}
		rng := rand.New(rand.NewPCG(7, 7))
		for _, noise := range []float64{0, 0.03} {
			for i := range probes {
				probes[i].US = fitted(truth, overhead, probes[i]) * (1 + noise*(2*rng.Float64()-1))
			}
			like := truth
			like.TFixed, like.TWeights, like.CTok, like.CKV, like.CReq, like.TExperts = 0, 0, 0, 0, 0, 0
			p, ovh, _, stderr, err := fit(probes, like)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if noise == 0 {
				for _, c := range [][2]float64{{float64(p.TFixed), float64(truth.TFixed)}, {float64(p.TWeights), float64(truth.TWeights)}, {float64(p.CTok), float64(truth.CTok)},
					{float64(p.CKV), float64(truth.CKV)}, {float64(p.CReq), float64(truth.CReq)}, {float64(p.TExperts), float64(truth.TExperts)}, {ovh, overhead}} {
					if math.Abs(c[0]-c[1]) > 1e-3*math.Max(c[1], 1) {
						t.Errorf("%s, exact probes: fitted %v, truth %v (t_fixed, t_weights, c_tok, c_kv, c_req, t_experts, overhead in turn)", name, c[0], c[1])
					}
				}
				continue
			}
			for _, s := range [][3]int{{1, 1000, 1}, {64, 64 * 600, 64}, {8, 8 * 4096, 8}, {8192, 8192, 1}, {2048, 2048, 1}} {
				want, got := truth.StepTime(s[0], s[1], s[2]).Seconds(), p.StepTime(s[0], s[1], s[2]).Seconds()
				if math.Abs(got-want) > 0.05*want {
					t.Errorf("%s, 3%% noise: step %v fitted %.4g s, truth %.4g s", name, s, got, want)
				}
			}
			// The reported uncertainty covers the error: compute and KV
			// terms within four standard errors of the truth.
			for _, c := range []struct {
				key       string
				got, want float64
			}{{"c_tok_us", float64(p.CTok), float64(truth.CTok)}, {"c_kv_us", float64(p.CKV), float64(truth.CKV)}} {
				se := stderr[c.key] * c.got
				if se <= 0 || math.Abs(c.got-c.want) > 4*se {
					t.Errorf("%s, 3%% noise: %s %.4g ± %.2g (one standard error), truth %.4g", name, c.key, c.got, se, c.want)
				}
			}
		}
	}
}

// TestNoisyServer: against an engine whose every step varies by 5%
// (seeded jitter), two calibrations with different probe prompts agree
// with each other and with the truth, and report a larger uncertainty than
// a quiet server's fit.
func TestNoisyServer(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures servers on the wall clock: run without -race or -short, as .ci/run does")
	}
	secret, err := sim.LoadProfile("h100-llama3.1-8b")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cl := serve(t, sim.Config{Profile: secret, Seed: 5, Jitter: 0.05})
	var fits []*Result
	for _, seed := range []uint64{1, 2} {
		res, err := Run(ctx, Config{Client: cl, Like: secret, Seed: seed, Repeats: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: c_tok %.2f, t_weights+t_fixed %.0f, c_kv %.4f; relative standard errors %v; rms %.3f",
			seed, float64(res.Profile.CTok), float64(res.Profile.TWeights+res.Profile.TFixed), float64(res.Profile.CKV), res.StdErr, res.RMSRelative)
		fits = append(fits, res)
	}
	for _, s := range [][3]int{{1, 1000, 1}, {64, 64 * 600, 64}, {8, 8 * 4096, 8}, {8192, 8192, 1}} {
		want := secret.StepTime(s[0], s[1], s[2]).Seconds()
		for i, f := range fits {
			if got := f.Profile.StepTime(s[0], s[1], s[2]).Seconds(); math.Abs(got-want) > 0.05*want {
				t.Errorf("fit %d: step %v fitted %.4g s, truth %.4g s (%+.1f%%)", i, s, got, want, 100*(got-want)/want)
			}
		}
	}
	// The uncertainty it reports covers the truth's compute term.
	for i, f := range fits {
		se := f.StdErr["c_tok_us"] * float64(f.Profile.CTok)
		if se <= 0 || math.Abs(float64(f.Profile.CTok)-float64(secret.CTok)) > 4*se {
			t.Errorf("fit %d: c_tok %.3f ± %.3f, truth %.3f", i, float64(f.Profile.CTok), se, float64(secret.CTok))
		}
	}
}

// TestNotLikeVLLM: a server that answers without streamed usage is refused
// with the reason, not fitted.
func TestNotLikeVLLM(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}]}`)
	}))
	defer srv.Close()
	cl, err := client.New(client.Config{BaseURL: srv.URL, Model: "m", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Config{Client: cl, Repeats: 1})
	if !errors.Is(err, ErrNotLike) || !strings.Contains(err.Error(), "usage") {
		t.Errorf("a server without usage: %v", err)
	}
}

// TestFitBeatingThePhysics: a server faster than the hardware --like names
// (here an engine computing at five times the H100's peak) is fitted, and
// the result says it beats that hardware's physics.
func TestFitBeatingThePhysics(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures servers on the wall clock: run without -race or -short, as .ci/run does")
	}
	fast, err := sim.LoadProfile("h100-llama3.1-8b")
	if err != nil {
		t.Fatal(err)
	}
	fast.CTok = 5 // 16 GFLOP a token in 5 us: 3.2 PFLOPS
	ctx, cl := serve(t, sim.Config{Profile: fast, Seed: 5})
	like, err := sim.LoadProfile("h100-llama3.1-8b-tp1-bf16")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Config{Client: cl, Like: like, Repeats: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "beats the physics") || !strings.Contains(res.Warnings[0], "c_tok_us") {
		t.Errorf("fitted c_tok %.2f on an H100: warnings %q", float64(res.Profile.CTok), res.Warnings)
	}
}

// serve starts an engine on the wall clock (polling the last 2 ms of each
// step, for exact step times) and a client of it; both end with the test.
func serve(t *testing.T, cfg sim.Config) (context.Context, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cfg.Spin = 2 * time.Millisecond
	c, err := sim.Start(ctx, sim.ClusterConfig{Engine: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl, err := client.New(client.Config{BaseURL: c.URLs()[0], Model: cfg.Profile.Model, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, cl
}
