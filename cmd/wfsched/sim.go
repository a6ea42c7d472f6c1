package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/sim"
)

type simOptions struct {
	listen       string
	instances    int
	profile      string
	model        string
	timeScale    float64
	seed         uint64
	printProfile bool
	slow         float64
	noDetails    bool
	spin         time.Duration
	faults       sim.Faults
	apiKey       string
	sched        string
	autoTools    bool
	jitter       float64
	parallel     int
	fields       bool
}

func newSimCmd() *cobra.Command {
	var o simOptions
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Serve the embedded vLLM-like engine over the OpenAI API (no GPU needed)",
		Long: `Sim serves N independent embedded engines on consecutive ports. Each behaves like vLLM
where a scheduler or router can see it: continuous batching with chunked prefill, a paged
KV cache with prefix caching and preemption, vLLM's metric names, and a step-time model
calibrated from published measurements. Times are modeled: --time-scale 0.1 runs ten times
faster than the modeled GPU; responses carry the scale in the X-Wfsched-Time-Scale header.

Faults for reliability tests: rates here, or per request with the header
X-Wfsched-Fault: error=503 | hang | cut=N | slow=F.`,
		Example: `  wfsched sim
  wfsched sim --instances 4 --listen 127.0.0.1:8000 --time-scale 0.1
  wfsched sim --print-profile
  wfsched sim --enable-auto-tool-choice     # for agent frameworks that offer tools
  wfsched sim --fields                      # what the engine does with each request field
  wfsched sim --profile a100-llama3.1-8b --fault-error-rate 0.05 --fault-error-status 429`,
		Args: noArgs(""),
		RunE: func(cmd *cobra.Command, _ []string) error { return runSim(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8000", "first instance's address; the others take the next ports")
	f.IntVar(&o.instances, "instances", 1, "number of independent engines")
	f.StringVar(&o.profile, "profile", sim.DefaultProfile, "built-in profile ("+strings.Join(sim.Profiles(), ", ")+"), a derived GPU-MODEL[-tpN][-bf16|fp8] (GPUs: "+strings.Join(sim.GPUs(), ", ")+"; models: "+strings.Join(sim.Models(), ", ")+"), a description file or a JSON profile file")
	f.StringVar(&o.model, "model", "", "served model name (default: the profile's)")
	f.Float64Var(&o.timeScale, "time-scale", 1, "wall seconds per modeled second (0.1 runs 10x faster than the modeled GPU)")
	f.Uint64Var(&o.seed, "seed", 1, "seed of output lengths, outputs and fault draws")
	f.BoolVar(&o.printProfile, "print-profile", false, "print the profile in use as JSON and exit")
	f.StringVar(&o.sched, "scheduling-policy", sim.SchedulingFCFS, "as vLLM's: fcfs, or priority (requests' priority field orders the queue, lower first, and the lowest priority is preempted first; under fcfs a non-zero priority is refused)")
	f.Float64Var(&o.slow, "fault-slow", 1, "multiply every step's modeled time (1.2 = a 20% slowdown)")
	f.Float64Var(&o.jitter, "fault-jitter", 0, "vary every step's modeled time by this relative standard deviation (0.05: about 5%), seeded")
	f.Float64Var(&o.faults.ErrorRate, "fault-error-rate", 0, "fraction of requests answered with --fault-error-status")
	f.IntVar(&o.faults.ErrorStatus, "fault-error-status", 503, "status of injected errors: 429, 500 or 503")
	f.Float64Var(&o.faults.HangRate, "fault-hang-rate", 0, "fraction of requests never answered")
	f.Float64Var(&o.faults.CutRate, "fault-cut-rate", 0, "fraction of streams cut abruptly after --fault-cut-after chunks")
	f.IntVar(&o.faults.CutAfter, "fault-cut-after", 3, "chunks sent before a cut")
	f.DurationVar(&o.spin, "spin-wait", 0, "poll the clock for the last part of each step instead of sleeping (e.g. 1.5ms): exact times for a lone engine, at the cost of a core")
	f.StringVar(&o.apiKey, "api-key", "", "require this bearer token on /v1 requests, as vLLM's --api-key does")
	f.BoolVar(&o.autoTools, "enable-auto-tool-choice", false, "serve tool_choice \"auto\" (and tools without a tool_choice), as vLLM's flag of that name; without it such requests get vLLM's 400")
	f.IntVar(&o.parallel, "parallel-tool-calls", 1, "with --enable-auto-tool-choice: call up to this many of the offered tools in one answer, unless the request sends parallel_tool_calls false")
	f.BoolVar(&o.fields, "fields", false, "print the table of request fields and what the engine does with each (markdown), and exit")
	f.BoolVar(&o.noDetails, "no-prompt-details", false, "answer prompt_tokens_details as null, like vLLM without --enable-prompt-tokens-details")
	brief(f, map[string]string{
		"enable-auto-tool-choice": "serve tool_choice \"auto\", as vLLM's flag of that name",
		"parallel-tool-calls":     "with auto tool choice: tools one answer may call at once",
		"fault-jitter":            "vary every step's time by this relative deviation (0.05: 5%)",
		"fields":                  "print the request fields and what the engine does with each; exit",
		"no-prompt-details":       "answer prompt_tokens_details as null, as vLLM does by default",
		"profile":                 "built-in, GPU-MODEL[-tpN][-bf16|fp8], or a file",
		"scheduling-policy":       "as vLLM's: fcfs, or priority (lower first; preempts the lowest)",
		"spin-wait":               "poll the clock for the last part of each step (exact; costs a core)",
		"time-scale":              "wall seconds per modeled second (0.1: ten times faster)",
	})
	return cmd
}

func runSim(cmd *cobra.Command, o simOptions) error {
	prof, err := sim.LoadProfile(o.profile)
	if err != nil {
		return usageError("--profile: %v", err)
	}
	if o.printProfile {
		return prof.WriteJSON(cmd.OutOrStdout())
	}
	if o.fields {
		return sim.WriteFieldsTable(cmd.OutOrStdout())
	}
	if o.instances < 1 {
		return usageError("--instances %d: want at least 1", o.instances)
	}
	if o.parallel < 1 {
		return usageError("--parallel-tool-calls %d: want at least 1", o.parallel)
	}
	if err := sim.CheckTimeScale(o.timeScale); err != nil {
		return usageError("--time-scale: %v", err)
	}
	if o.spin < 0 {
		return usageError("--spin-wait %v is negative", o.spin)
	}
	if o.slow < 1 {
		return usageError("--fault-slow %v: want a factor of at least 1", o.slow)
	}
	if o.jitter < 0 || o.jitter > 0.5 {
		return usageError("--fault-jitter %v: want 0 to 0.5", o.jitter)
	}
	if err := (sim.Config{SchedulingPolicy: o.sched}).Validate(); err != nil {
		return usageError("--scheduling-policy: %v", err)
	}
	if err := o.faults.Validate(); err != nil {
		return usageError("%v", err)
	}
	o.faults.Seed = o.seed
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usageError("--listen %q: %v", o.listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(cmd.ErrOrStderr(), "wfsched: warning: listening on %s, beyond this machine's loopback\n", host)
	}
	c, err := sim.Start(cmd.Context(), sim.ClusterConfig{
		Engine:    sim.Config{Profile: prof, Model: o.model, TimeScale: o.timeScale, Seed: o.seed, SlowFactor: o.slow, Jitter: o.jitter, Spin: o.spin, SchedulingPolicy: o.sched},
		Server:    sim.ServerConfig{Faults: o.faults, NoPromptDetails: o.noDetails, APIKey: o.apiKey, AutoToolChoice: o.autoTools, ParallelToolCalls: o.parallel},
		Instances: o.instances,
		Listen:    o.listen,
	})
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	e := c.Servers()[0].Engine()
	fmt.Fprintf(w, "wfsched sim: %d engine(s), profile %s, model %s, time scale %g\n", o.instances, prof.Name, e.Model(), o.timeScale)
	for _, u := range c.URLs() {
		fmt.Fprintf(w, "  %s/v1\n", u)
	}
	fmt.Fprintln(w, "Ctrl-C stops.")
	<-cmd.Context().Done()
	fmt.Fprintln(w, "wfsched sim: stopping")
	return c.Close()
}
