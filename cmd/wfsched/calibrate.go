package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/calibrate"
	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/sim"
)

type calibrateOptions struct {
	endpoint, model, apiKey, like, out string
	maxPrompt, repeats, validation     int
	maxError                           float64
	budget                             time.Duration
	seed                               uint64
}

func newCalibrateCmd() *cobra.Command {
	var o calibrateOptions
	cmd := &cobra.Command{
		Use:   "calibrate --endpoint URL",
		Short: "Fit the engine's profile to a running OpenAI-compatible server, and measure the fit's error",
		Long: `Calibrate measures a running server (vLLM, or anything that streams chat completions with
usage) with planned probes: one request alone, concurrent decodes at batches of 4, 16 and 64,
long-context decodes, and lone prompts of growing length. It fits the profile's step-time
coefficients to them by least squares and writes the profile, which --profile then takes.

It then validates the fit on a held-out request stream: Poisson arrivals of mixed lengths,
sent to the server and run on the virtual clock with the fitted profile. It reports the errors
of TTFT, ITL and E2E (mean and p90) and fails (exit 1) when one is over --max-error.

Probes are sent one batch at a time and take about a minute on a GPU; --budget bounds it.`,
		Example: `  wfsched calibrate --endpoint http://127.0.0.1:8000 -o my-server.json
  wfsched calibrate --endpoint http://127.0.0.1:8000 --like h100-qwen3-30b-a3b -o qwen.json
  wfsched sim --profile my-server.json`,
		Args: noArgs(""),
		RunE: func(cmd *cobra.Command, _ []string) error { return runCalibrate(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.endpoint, "endpoint", "", "the server's base URL (required)")
	f.StringVar(&o.model, "model", "", "served model name (default: the server's first)")
	f.StringVar(&o.apiKey, "api-key", "", "bearer token (default $WFSCHED_API_KEY)")
	f.StringVar(&o.like, "like", sim.DefaultProfile, "profile whose limits and KV capacity the result keeps (and, for a mixture of experts, its expert share)")
	f.StringVarP(&o.out, "output", "o", "calibrated-profile.json", "profile file to write; the probes and the validation go beside it (.report.json)")
	f.IntVar(&o.maxPrompt, "max-prompt", 8192, "longest prompt to probe, in tokens")
	f.IntVar(&o.repeats, "repeats", 2, "times each probe runs")
	f.IntVar(&o.validation, "validation", 40, "requests in the held-out validation stream (0: no validation)")
	f.Float64Var(&o.maxError, "max-error", 15, "fail when a validated metric's mean or p90 is off by more than this many percent")
	f.DurationVar(&o.budget, "budget", 10*time.Minute, "stop (with an error) after this long")
	f.Uint64Var(&o.seed, "seed", 1, "seeds the prompts and the validation stream")
	brief(f, map[string]string{
		"like":   "profile whose limits (and MoE expert share) the result keeps",
		"output": "profile file to write (the report goes beside it)",
	})
	return cmd
}

func runCalibrate(cmd *cobra.Command, o calibrateOptions) error {
	if o.endpoint == "" {
		return usageError("--endpoint is required: the server to calibrate")
	}
	if o.maxError <= 0 || o.repeats < 1 || o.validation < 0 || o.maxPrompt < 1024 {
		return usageError("--max-error must be positive, --repeats at least 1, --validation not negative, --max-prompt at least 1024")
	}
	like, err := sim.LoadProfile(o.like)
	if err != nil {
		return usageError("--like: %v", err)
	}
	if o.apiKey == "" {
		o.apiKey = os.Getenv("WFSCHED_API_KEY")
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.budget)
	defer cancel()
	cl, err := client.New(client.Config{BaseURL: o.endpoint, Model: o.model, APIKey: o.apiKey, MaxAttempts: 1})
	if err != nil {
		return usageError("--endpoint: %v", err)
	}
	if o.model == "" {
		if err := cl.Discover(ctx); err != nil {
			return fmt.Errorf("%s: %w (is the server running? give --model if it does not list models)", o.endpoint, err)
		}
	}
	stderr := cmd.ErrOrStderr()
	started := time.Now()
	res, err := calibrate.Run(ctx, calibrate.Config{Client: cl, Like: like, MaxPrompt: o.maxPrompt, Repeats: o.repeats, ValidationRequests: o.validation, Seed: o.seed,
		Progress: func(s string) { fmt.Fprintf(stderr, "calibrate: %5.1fs %s\n", time.Since(started).Seconds(), s) }})
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("calibrate: over --budget %v: %w", o.budget, err)
	}
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	if dir := filepath.Dir(o.out); o.out != "-" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	res.Profile.Model = cl.Model()
	res.Profile.Source = fmt.Sprintf("calibrated against %s on %s (%d probes, RMS relative residual %.1f%%)", o.endpoint, time.Now().UTC().Format("2006-01-02"), len(res.Probes), 100*res.RMSRelative)
	if err := writeOut(cmd.OutOrStdout(), o.out, func(w io.Writer) error { return res.Profile.WriteJSON(w) }); err != nil {
		return err
	}
	reportPath := strings.TrimSuffix(o.out, ".json") + ".report.json"
	if err := report.WriteFile(reportPath, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	p := res.Profile
	fmt.Fprintf(w, "Fitted (modeled µs): t_fixed %.0f, t_weights %.0f, c_tok %.2f, c_kv %.4f, c_req %.2f", float64(p.TFixed), float64(p.TWeights), float64(p.CTok), float64(p.CKV), float64(p.CReq))
	if p.TExperts > 0 {
		fmt.Fprintf(w, ", t_experts %.0f", float64(p.TExperts))
	}
	fmt.Fprintf(w, "; overhead beside a first token %.0f; RMS relative residual %.1f%% over %d probes\n", res.OverheadUS, 100*res.RMSRelative, len(res.Probes))
	var unc []string
	for _, k := range []string{"t_fixed_us", "t_weights_us", "c_tok_us", "c_kv_us", "c_req_us", "t_experts_us", "overhead_us"} {
		if se, ok := res.StdErr[k]; ok && se > 0 {
			unc = append(unc, fmt.Sprintf("%s ±%.1f%%", strings.TrimSuffix(k, "_us"), 100*se))
		}
	}
	if len(unc) > 0 {
		fmt.Fprintf(w, "Uncertainty (one standard error): %s\n", strings.Join(unc, ", "))
	}
	fmt.Fprintf(w, "Profile: %s (wfsched sim --profile %s); probes and validation: %s\n", o.out, o.out, reportPath)
	for _, warn := range res.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", warn)
	}
	if v := res.Validation; v != nil {
		fmt.Fprintf(w, "Validation, %d requests at %.2f/s (modeled):\n", v.Requests, v.Rate)
		fmt.Fprintf(w, "  %-5s %12s %12s %12s %12s %9s %9s\n", "", "server mean", "model mean", "server p90", "model p90", "mean err", "p90 err")
		for _, k := range []string{"ttft", "itl", "e2e"} {
			m := v.Metrics[k]
			fmt.Fprintf(w, "  %-5s %10.1fms %10.1fms %10.1fms %10.1fms %8.1f%% %8.1f%%\n", k, m.RealMean, m.SimMean, m.RealP90, m.SimP90, m.MeanErr, m.P90Err)
		}
		if k, worst := v.Worst(); worst > o.maxError {
			return fmt.Errorf("validation failed: %s off by %.1f%%, over --max-error %g%%", k, worst, o.maxError)
		}
		fmt.Fprintf(w, "Validation passed: every error within --max-error %g%%.\n", o.maxError)
	}
	return nil
}
