package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/router"
)

type routerOptions struct {
	cfg      router.Config
	backends string
	models   string
	listen   string
	capture  string
	discover string
}

func newRouterCmd() *cobra.Command {
	var o routerOptions
	cmd := &cobra.Command{
		Use:   "router --backends URL,URL [--routing-logic L] [--listen 127.0.0.1:8001] [flags]",
		Short: "Serve the workflow-affinity router in front of OpenAI-compatible servers",
		Long: `Router is an OpenAI-compatible reverse proxy that keeps each workflow's calls on one
backend, to reuse its KV cache, within a load bound. Requests name their workflow with a
workflow_metadata object in the body (or X-Workflow-Id / X-Agent-Id headers); the router
strips it before forwarding. Requests without one behave as through a plain proxy.

Routing logics: roundrobin, least-loaded, session (consistent hash of the workflow id or
X-Session-Id), prefix-aware (longest cached prompt prefix, least-loaded when imbalanced),
workflow-aware (a home per workflow, the least loaded backend under a bound on homes, spilling
over when the home is over the load bound, a second candidate for failover). Chat, completions and
responses are routed so; a Responses API follow-up (previous_response_id) always goes to the
backend that stored the response it continues. Every other endpoint (embeddings, tokenize,
score, rerank, version...) passes through to the least loaded backend (--passthrough).

It also serves agent-to-agent message queues (POST /v1/workflows/{id}/messages, GET
/v1/workflows/{id}/agents/{agent}/messages?timeout=S), workflow status
(GET /v1/workflows/{id}/status, /v1/workflows/stats, DELETE /v1/workflows/{id}) and
Prometheus metrics (/metrics, wfsched_router_*).

With --state redis://HOST:PORT/DB, replicas of the router (each given the same backends)
share workflow homes, message queues and Responses ids through Redis: any replica routes a
workflow to the home another gave it, and a message posted through one is read through
another. If Redis is lost, each replica routes on its own state (/health says degraded)
and resumes when it returns.`,
		Example: `  wfsched sim --instances 4 --listen 127.0.0.1:8100 --time-scale 0.1 &
  wfsched router --backends http://127.0.0.1:8100,http://127.0.0.1:8101,http://127.0.0.1:8102,http://127.0.0.1:8103 &
  wfsched run --dag traces/agents-40.json --endpoint http://127.0.0.1:8001 --workflows 8 --concurrency 8`,
		Args: noArgs(""),
		RunE: func(cmd *cobra.Command, _ []string) error { return runRouter(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.backends, "backends", "", "comma-separated backend URLs (required)")
	f.StringVar(&o.backends, "static-backends", "", "the design documents' name for --backends")
	f.StringVar(&o.discover, "service-discovery", "static", "how backends are found, as the design documents name it: static (--backends as given) or dns (each --backends URL's host resolved again every --discovery-interval: its A/AAAA records, one backend per address, or SRV records for a host starting with _; backends join and leave without a restart)")
	o.cfg.DiscoverInterval = router.DefaultDiscoverInterval
	f.Var((*seconds)(&o.cfg.DiscoverInterval), "discovery-interval", "with --service-discovery dns: how often the names are resolved again")
	f.StringVar(&o.models, "static-models", "", "models /v1/models lists (default: ask the backends)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8001", "address to serve on")
	f.StringVar(&o.cfg.Logic, "routing-logic", router.DefaultLogic, "routing logic: "+strings.Join(router.Logics(), ", "))
	f.StringVar(&o.cfg.FallbackLogic, "fallback-logic", router.DefaultFallback, "logic for requests without a workflow id (workflow-aware routing)")
	f.Float64Var(&o.cfg.LoadFactor, "load-factor", router.DefaultLoadFactor, "bounded-load factor: no backend takes more than this times the average")
	o.cfg.WorkflowTTL = router.DefaultWorkflowTTL
	f.Var((*seconds)(&o.cfg.WorkflowTTL), "workflow-ttl", "forget a workflow idle this long (in-flight requests keep it alive): a duration, or a number of seconds")
	f.IntVar(&o.cfg.MaxWorkflows, "max-workflows", router.DefaultMaxWorkflows, "workflows tracked; beyond, the least recently used is forgotten")
	f.IntVar(&o.cfg.Admission, "admission", 0, "requests each backend serves at once; more wait here, by their priority field (lower first) then arrival, instead of in the backend's queue (0: none)")
	f.StringVar(&o.capture, "capture", "", "append one JSON line per chat, completions or responses call to a new file in this directory, as each completes (wfsched convert DIR rebuilds the workflows)")
	f.StringVar(&o.cfg.CaptureContent, "capture-content", capture.Hash, "what the capture keeps of texts: full (the texts), hash (token counts and hashes, enough to rebuild dependencies) or none (token counts)")
	f.StringVar(&o.cfg.State, "state", "memory", "where workflow homes, message queues and Responses ids live: memory (this process) or redis://HOST:PORT/DB, shared by router replicas given the same URL and backends")
	f.StringVar(&o.cfg.Passthrough, "passthrough", router.PassAll, "other endpoints passed to the least loaded backend: all (vLLM's and any path under /v1/), vllm (vLLM's only) or none")
	f.IntVar(&o.cfg.MaxResponses, "max-responses", router.DefaultMaxResponses, "Responses API response ids remembered, so previous_response_id follow-ups reach the backend storing them")
	f.IntVar(&o.cfg.MaxConnsPerBackend, "max-connections-per-backend", router.DefaultMaxConnsPerBackend, "connections (requests in flight) to each backend; more requests wait in the router")
	f.IntVar(&o.cfg.MaxQueueSize, "max-message-queue-size", router.DefaultMaxQueueSize, "messages one agent's queue holds")
	o.cfg.MessageTTL = router.DefaultMessageTTL
	f.Var((*seconds)(&o.cfg.MessageTTL), "message-ttl", "drop undelivered messages after this long: a duration or seconds")
	f.DurationVar(&o.cfg.FirstByteTimeout, "first-byte-timeout", router.DefaultFirstByteTimeout, "give up on a backend that sends no response headers in this time (504; another backend only for requests that may run twice)")
	f.DurationVar(&o.cfg.IdleTimeout, "idle-timeout", router.DefaultIdleTimeout, "end a response whose backend sends nothing for this long")
	f.StringVar(&o.cfg.APIKey, "api-key", "", "require this bearer token on every endpoint but /health (default $WFSCHED_API_KEY; clients' Authorization headers are forwarded to backends either way)")
	// Bounds on what clients can make the router hold.
	f.IntVar(&o.cfg.MaxConns, "max-connections", router.DefaultMaxConns, "client connections held; at the limit the one idle or sending its request the longest is closed")
	f.IntVar(&o.cfg.ReservedConns, "reserved-connections", router.DefaultReservedConns, "connections over --max-connections kept for /health and /metrics")
	f.DurationVar(&o.cfg.HeaderTimeout, "header-timeout", router.DefaultHeaderTimeout, "time a client may take to send a request's headers")
	f.DurationVar(&o.cfg.BodyTimeout, "body-timeout", router.DefaultBodyTimeout, "time a client may take to send a request's body")
	f.BoolVar(&o.cfg.NetHTTPServer, "net-http-server", false, "serve every client connection with Go's net/http server (by default the router parses the requests clients send most itself and hands any other connection to net/http)")
	f.DurationVar(&o.cfg.ClientIdleTimeout, "client-idle-timeout", router.DefaultClientIdleTimeout, "close client keep-alive connections idle this long")
	f.DurationVar(&o.cfg.WriteTimeout, "write-timeout", router.DefaultWriteTimeout, "close a client connection that reads nothing of its answer for this long (its backend request is cancelled)")
	f.StringVar(&o.cfg.Forwarded, "forwarded", router.ForwardedAppend, "X-Forwarded-For: append the client's address (append), set it alone (replace), or append and keep a trusted front proxy's X-Forwarded-Host/-Proto (trust)")
	f.Int64Var(&o.cfg.MaxBodyBytes, "max-body-bytes", router.DefaultMaxBodyBytes, "largest request body (413 beyond)")
	f.Int64Var(&o.cfg.MaxBodyBytesHeld, "max-body-bytes-held", router.DefaultMaxBodyBytesHeld, "request-body bytes held at once (503 beyond; bodies over 1 MiB may take three quarters)")
	f.Int64Var(&o.cfg.MaxQueueBytes, "max-message-queue-bytes", router.DefaultMaxQueueBytes, "bytes one agent's message queue holds (429 beyond)")
	f.Int64Var(&o.cfg.MaxMessages, "max-message-bytes", router.DefaultMaxMessageBytes, "bytes all message queues hold together (429 beyond)")
	f.IntVar(&o.cfg.MaxQueues, "max-message-queues", router.DefaultMaxQueues, "message queues holding messages (429 beyond)")
	f.Int64Var(&o.cfg.MaxWorkflowBytes, "max-workflow-bytes", router.DefaultMaxWorkflowBytes, "bytes of ids the workflow table keeps; beyond, the least recently used workflows are forgotten")
	f.IntVar(&o.cfg.MaxAgents, "max-agents-per-workflow", router.DefaultMaxAgents, "agent ids kept per workflow (more are counted, not named)")
	brief(f, map[string]string{
		"admission":                   "requests each backend serves at once; more wait here (0: no limit)",
		"api-key":                     "bearer token required on all but /health (default $WFSCHED_API_KEY)",
		"capture":                     "record every completion call to a new file in this folder",
		"capture-content":             "what the capture keeps of texts: full, hash or none",
		"first-byte-timeout":          "give up on a backend sending no headers this long (504)",
		"forwarded":                   "X-Forwarded-For: append, replace, or trust a front proxy's",
		"max-body-bytes-held":         "request-body bytes held at once (503 beyond)",
		"max-connections":             "client connections held (at the limit the longest idle closes)",
		"max-connections-per-backend": "connections to each backend; more requests wait in the router",
		"max-responses":               "Responses API ids remembered for previous_response_id",
		"max-workflow-bytes":          "bytes of ids the workflow table keeps",
		"net-http-server":             "serve every client connection with Go's net/http server",
		"passthrough":                 "other endpoints passed through: all, vllm or none",
		"routing-logic":               "routing logic, e.g. roundrobin or workflow-aware",
		"service-discovery":           "how backends are found: static, or dns (resolved again)",
		"state":                       "where workflow state lives: memory or redis://HOST:PORT/DB",
		"workflow-ttl":                "forget a workflow idle this long (a duration, or seconds)",
		"write-timeout":               "close a client that reads nothing of its answer this long",
		"discovery-interval":          "with --service-discovery dns: how often names resolve again",
		"fallback-logic":              "logic for requests without a workflow id",
		"load-factor":                 "no backend takes more than this times the average",
		"max-workflows":               "workflows tracked (the least recently used forgotten beyond)",
		"message-ttl":                 "drop undelivered messages after this long (or seconds)",
	})
	return cmd
}

func runRouter(cmd *cobra.Command, o *routerOptions) error {
	if o.cfg.APIKey == "" {
		// Read here, not as the flag's default: --help would print it.
		o.cfg.APIKey = os.Getenv("WFSCHED_API_KEY")
	}
	for _, b := range strings.Split(o.backends, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.cfg.Backends = append(o.cfg.Backends, b)
		}
	}
	if len(o.cfg.Backends) == 0 {
		return usageError("router needs --backends URL,URL (the servers to route to)")
	}
	switch o.discover {
	case "static":
	case "dns":
		if o.cfg.DiscoverInterval <= 0 {
			return usageError("--discovery-interval: want a positive duration")
		}
		o.cfg.Discover = router.DNSBackends(o.cfg.Backends, nil)
		ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
		urls, err := o.cfg.Discover(ctx)
		cancel()
		if err != nil {
			return usageError("--service-discovery dns: %v (the router needs one backend to start; it then follows the names every %v)", err, o.cfg.DiscoverInterval)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "wfsched router: %s resolved to %s\n", strings.Join(o.cfg.Backends, ","), strings.Join(urls, ","))
		o.cfg.Backends = urls
	default:
		return usageError("--service-discovery %s: want static (--backends as given) or dns (their names resolved again every --discovery-interval)", o.discover)
	}
	if o.models != "" {
		o.cfg.Models = strings.Split(o.models, ",")
	}
	if err := capture.CheckMode(o.cfg.CaptureContent); err != nil {
		return usageError("--capture-content: %v", err)
	}
	if o.capture != "" {
		w, err := capture.Create(o.capture)
		if err != nil {
			return usageError("--capture: %v", err)
		}
		defer w.Close()
		o.cfg.Capture = w
		fmt.Fprintf(cmd.OutOrStdout(), "wfsched router: capturing calls to %s (%s content)\n", w.Path(), o.cfg.CaptureContent)
	}
	rt, err := router.New(o.cfg)
	if err != nil {
		return usageError("%v", err)
	}
	// Collect harder near the memory the limits allow, and give memory
	// back to the system after a burst (unless GOMEMLIMIT says otherwise).
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit(router.MemoryCeiling(o.cfg), cgroupMemoryFiles...))
	}
	// Under that limit, collect less often (unless GOGC says otherwise).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(router.GCPercent)
	}
	host, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usageError("--listen %q: %v", o.listen, err)
	}
	// A backend at the router's own address would have it proxy to itself
	// (or, if an engine already holds that port, fail to start while
	// clients reach the engine directly).
	for _, b := range o.cfg.Backends {
		if u, err := url.Parse(b); err == nil && u.Port() == port && sameHost(u.Hostname(), host) {
			return usageError("backend %s is the router's own --listen address %s: give the router another --listen port or move the backend (docs/router.md's example serves engines on 8100-8103 and the router on 8001)", b, o.listen)
		}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(cmd.ErrOrStderr(), "wfsched: warning: listening on %s, beyond this machine's loopback\n", host)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wfsched router: %s routing over %d backend(s), serving http://%s/v1\nCtrl-C stops.\n",
		rt.Logic(), len(o.cfg.Backends), ln.Addr())
	err = rt.Serve(cmd.Context(), ln)
	fmt.Fprintln(cmd.OutOrStdout(), "wfsched router: stopped")
	return err
}

// seconds is a duration flag that also takes a plain number of seconds,
// as the design documents write it (--workflow-ttl 3600).
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }
func (s *seconds) Type() string   { return "duration" }

func (s *seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 {
			return fmt.Errorf("%v is negative", f)
		}
		*s = seconds(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration (1h, 90s) or a number of seconds")
	}
	*s = seconds(d)
	return nil
}

// cgroupMemoryFiles hold a container's memory limit: cgroup v2's, then v1's.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// softMemoryLimit is the Go runtime's soft memory limit for the router: its
// ceiling, or nine tenths of its container's memory limit (read from the
// first of files that exists) when that is lower, so that the collector
// works harder before the container is killed rather than after (the
// Helm chart's default limit, 1 GiB, is below the default ceiling).
func softMemoryLimit(ceiling int64, files ...string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 { // "max": no limit
			return ceiling
		}
		return min(ceiling, n/10*9)
	}
	return ceiling
}

// sameHost tells whether two host names may be the same machine's
// interface: equal, or both loopback, or one of them unspecified.
func sameHost(a, b string) bool {
	loop := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "localhost" || ip != nil && ip.IsLoopback()
	}
	any := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || ip != nil && ip.IsUnspecified()
	}
	return a == b || loop(a) && loop(b) || any(a) || any(b)
}
