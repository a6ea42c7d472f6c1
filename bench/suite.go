package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
)

// Suite is a benchmark suite file.
type Suite struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Clock is the cases' default clock: virtual (the default; exact, so
	// each case runs once and is gated on any change) or wall.
	Clock      string   `yaml:"clock"`
	TimeScale  float64  `yaml:"time_scale"` // embedded engine on the wall clock; default 0.25
	Profile    string   `yaml:"profile"`    // embedded engine profile
	Seed       uint64   `yaml:"seed"`
	Iterations int      `yaml:"iterations"` // wall-clock cases; default 3
	Warmup     int      `yaml:"warmup"`
	Track      []string `yaml:"track"` // figure keys; default makespan_s, ttft_p50_s, e2e_p50_s
	Cases      []Case   `yaml:"cases"`

	// Dir is the folder of the suite file; traces are relative to it.
	Dir string `yaml:"-"`
}

// Case is one configuration of the suite, run for each policy and routing
// logic it names (its arms).
type Case struct {
	Name          string   `yaml:"name"`
	Clock         string   `yaml:"clock"` // "": the suite's
	Traces        []string `yaml:"traces"`
	Policies      []string `yaml:"policies"`       // default [parallel]
	RoutingLogics []string `yaml:"routing_logics"` // with instances > 1
	Instances     int      `yaml:"instances"`      // default 1
	Workflows     int      `yaml:"workflows"`      // default one per trace
	Concurrency   int      `yaml:"concurrency"`    // default 1
	MaxParallel   int      `yaml:"max_parallel"`
	// Rate, when set, makes workflows arrive open-loop at this many per
	// modeled second (Poisson; gamma with Burstiness other than 1), up to
	// MaxConcurrency in flight (0: no cap), instead of Concurrency at once.
	Rate           float64 `yaml:"rate"`
	Burstiness     float64 `yaml:"burstiness"`
	MaxConcurrency int     `yaml:"max_concurrency"`
	// ReplaySpeed, when set, starts each trace's workflow at its recorded
	// start divided by it (traces from a capture or an OpenTelemetry
	// export record starts), instead of a closed loop or a rate.
	ReplaySpeed float64 `yaml:"replay_speed"`
}

// Arm is one (policy, routing logic) of a case.
type Arm struct {
	Label, Policy, Logic string
}

// Arms lists a case's arms: each policy, times each routing logic.
func (c Case) Arms() []Arm {
	var out []Arm
	for _, p := range c.Policies {
		if len(c.RoutingLogics) == 0 {
			out = append(out, Arm{Label: p, Policy: p})
			continue
		}
		for _, l := range c.RoutingLogics {
			label := l
			if len(c.Policies) > 1 {
				label = p + "+" + l
			}
			out = append(out, Arm{Label: label, Policy: p, Logic: l})
		}
	}
	return out
}

// SuiteError says where a suite file is wrong.
type SuiteError struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *SuiteError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ": line %d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	return b.String() + ": " + e.Msg
}

// Load reads and checks a suite file.
func Load(path string) (*Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Suite
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, yamlError(path, err)
	}
	s.Dir = filepath.Dir(path)
	if err := s.check(path, data); err != nil {
		return nil, err
	}
	return &s, nil
}

// yamlError turns yaml.v3's errors ("yaml: line 7: field polices not found
// in type bench.Case") into a SuiteError.
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	if strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type") {
		key := strings.Fields(msg)[1]
		return &SuiteError{File: path, Line: line, Key: key, Msg: "unknown key (see the suite format in docs/bench.md)"}
	}
	if msg == "EOF" {
		return &SuiteError{File: path, Msg: "empty suite"}
	}
	return &SuiteError{File: path, Line: line, Msg: msg}
}

// lineOf finds the first line where key: appears, for messages.
func lineOf(data []byte, key string) int {
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimLeft(strings.TrimLeft(l, " "), "- "), key+":") {
			return i + 1
		}
	}
	return 0
}

func (s *Suite) check(path string, data []byte) error {
	bad := func(key, format string, args ...any) error {
		return &SuiteError{File: path, Line: lineOf(data, strings.Split(key, ".")[len(strings.Split(key, "."))-1]), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if s.Name == "" {
		return bad("name", "missing: name the suite")
	}
	switch s.Clock {
	case "":
		s.Clock = ClockVirtual
	case ClockVirtual, ClockWall:
	default:
		return bad("clock", "%q: want virtual or wall", s.Clock)
	}
	if s.TimeScale == 0 {
		s.TimeScale = 0.25
	}
	if s.TimeScale < 0 {
		return bad("time_scale", "%v: want a positive number", s.TimeScale)
	}
	if s.Iterations == 0 {
		s.Iterations = 3
	}
	if s.Iterations < 1 || s.Warmup < 0 {
		return bad("iterations", "want iterations >= 1 and warmup >= 0")
	}
	if len(s.Track) == 0 {
		s.Track = []string{"makespan_s", "ttft_p50_s", "e2e_p50_s"}
	}
	for _, k := range s.Track {
		if _, ok := FigureByKey(k); !ok {
			return bad("track", "unknown figure %q (want %s)", k, strings.Join(figureKeys(), ", "))
		}
	}
	if len(s.Cases) == 0 {
		return bad("cases", "missing: give at least one case")
	}
	seen := map[string]bool{}
	for i := range s.Cases {
		c := &s.Cases[i]
		key := fmt.Sprintf("cases[%d]", i)
		if c.Name == "" || seen[c.Name] {
			return bad(key+".name", "%q: each case needs a unique name", c.Name)
		}
		seen[c.Name] = true
		switch c.Clock {
		case "":
			c.Clock = s.Clock
		case ClockVirtual, ClockWall:
		default:
			return bad(key+".clock", "%q: want virtual or wall", c.Clock)
		}
		if len(c.Traces) == 0 {
			return bad(key+".traces", "missing: name at least one trace file")
		}
		for _, t := range c.Traces {
			if _, err := os.Stat(s.TracePath(t)); err != nil {
				return bad(key+".traces", "%s: %v (paths are relative to the suite file)", t, err)
			}
		}
		if len(c.Policies) == 0 {
			c.Policies = []string{"parallel"}
		}
		for _, p := range c.Policies {
			if _, err := scheduler.PolicyByName(p); err != nil {
				return bad(key+".policies", "%v", err)
			}
		}
		if c.Instances == 0 {
			c.Instances = 1
		}
		for _, l := range c.RoutingLogics {
			if err := router.CheckLogic(l); err != nil {
				return bad(key+".routing_logics", "%v", err)
			}
		}
		if len(c.RoutingLogics) > 0 && c.Instances < 2 {
			return bad(key+".instances", "%d: routing logics need instances > 1", c.Instances)
		}
		if c.Instances < 1 || c.Workflows < 0 || c.Concurrency < 0 || c.MaxParallel < 0 {
			return bad(key, "instances, workflows, concurrency and max_parallel must be positive")
		}
		if c.Concurrency == 0 {
			c.Concurrency = 1
		}
		if c.ReplaySpeed < 0 || c.ReplaySpeed > 0 && (c.Rate > 0 || c.Workflows > 0) {
			return bad(key+".replay_speed", "%v: want a positive factor, without rate or workflows (each recorded workflow replays once)", c.ReplaySpeed)
		}
		if c.Rate < 0 || c.Burstiness < 0 || c.MaxConcurrency < 0 {
			return bad(key, "rate, burstiness and max_concurrency must not be negative")
		}
		if c.Rate == 0 && (c.Burstiness != 0 || c.MaxConcurrency != 0) {
			return bad(key, "burstiness and max_concurrency go with an open loop: set rate (workflows per second)")
		}
		if c.Rate > 0 && c.Burstiness == 0 {
			c.Burstiness = 1
		}
	}
	return nil
}

// TracePath is where a case's trace is: relative to the suite file,
// unless absolute.
func (s *Suite) TracePath(t string) string {
	if filepath.IsAbs(t) {
		return t
	}
	return filepath.Join(s.Dir, t)
}

// Clocks a case runs on.
const (
	ClockVirtual = "virtual"
	ClockWall    = "wall"
)

// Runs is how many measured runs a case gets: one on the virtual clock,
// whose results are exact, the suite's iterations on the wall clock.
func (s *Suite) Runs(c Case) (warmup, iterations int) {
	if c.Clock == ClockVirtual {
		return 0, 1
	}
	return s.Warmup, s.Iterations
}

// FigureByKey finds a figure comparisons report.
func FigureByKey(key string) (metrics.Figure, bool) {
	for _, f := range metrics.Figures {
		if f.Key == key {
			return f, true
		}
	}
	return metrics.Figure{}, false
}

func figureKeys() []string {
	var out []string
	for _, f := range metrics.Figures {
		out = append(out, f.Key)
	}
	return out
}
