package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// helmTemplate renders the chart with helm (installed by .ci/run from the
// Go module proxy; the test skips where it is missing).
func helmTemplate(t *testing.T, set ...string) ([]map[string]any, error) {
	t.Helper()
	helm, err := exec.LookPath("helm")
	if err != nil {
		t.Skip("helm not installed (.ci/run installs it: go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
	}
	args := []string{"template", "rel", "../../deploy/helm/wfsched", "--namespace", "ns"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	var out, stderr bytes.Buffer
	c := exec.Command(helm, args...)
	c.Stdout, c.Stderr = &out, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(&out)
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs, nil
}

// dig walks maps and lists by keys and indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func find(docs []map[string]any, kind, name string) map[string]any {
	for _, d := range docs {
		if d["kind"] == kind && dig(d, "metadata", "name") == name {
			return d
		}
	}
	return nil
}

// The chart's manifests, with the default values and with every option on:
// the router's args are flags the router takes (parsed by its own command),
// its port, probes and Service agree, and the vLLM servers it routes to are
// the StatefulSet's pods, started with prefix caching and token details.
func TestHelmChart(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  []string
	}{
		{"defaults", nil},
		{"every option", []string{"backends.static={http://other:8000}", "vllm.replicas=3", "vllm.hfTokenSecret=hf", "vllm.extraArgs={--max-model-len,32768}",
			"metrics.serviceMonitor.enabled=true", "router.apiKeySecret=key", "router.extraArgs.max-connections=8192", "router.extraArgs.admission=32",
			"router.extraArgs.passthrough=vllm", "router.port=9000", "service.port=80", "routingLogic=session", "workflowSupport.workflowTtl=600",
			"router.replicas=3", "redis.enabled=true", "backends.discovery=static"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := helmTemplate(t, tt.set...)
			if err != nil {
				t.Fatal(err)
			}
			dep := find(docs, "Deployment", "rel-wfsched-router")
			if dep == nil {
				t.Fatalf("no router Deployment in %d documents", len(docs))
			}
			c := dig(dep, "spec", "template", "spec", "containers", 0)
			var args []string
			for _, a := range dig(c, "args").([]any) {
				args = append(args, fmt.Sprint(a))
			}
			if args[0] != "router" {
				t.Fatalf("args %q", args)
			}
			cmd := newRouterCmd()
			if err := cmd.ParseFlags(args[1:]); err != nil {
				t.Errorf("the router refuses the chart's args %q: %v", args, err)
			}
			f := cmd.Flags()
			listen, _ := f.GetString("listen")
			port := fmt.Sprint(dig(c, "ports", 0, "containerPort"))
			if !strings.HasSuffix(listen, ":"+port) || dig(c, "ports", 0, "name") != "http" {
				t.Errorf("listens on %s, container port %s", listen, port)
			}
			if dig(c, "readinessProbe", "httpGet", "path") != "/health" || dig(c, "livenessProbe", "httpGet", "path") != "/metrics" {
				t.Errorf("probes %v %v", dig(c, "readinessProbe"), dig(c, "livenessProbe"))
			}
			if a := dig(dep, "spec", "template", "metadata", "annotations"); dig(a, "prometheus.io/port") != port || dig(a, "prometheus.io/scrape") != "true" {
				t.Errorf("scrape annotations %v", a)
			}
			svc := find(docs, "Service", "rel-wfsched-router")
			if dig(svc, "spec", "ports", 0, "targetPort") != "http" {
				t.Errorf("router Service %v", svc)
			}
			backends, _ := f.GetString("backends")
			sts := find(docs, "StatefulSet", "rel-wfsched-vllm")
			if sts == nil {
				t.Fatal("no vLLM StatefulSet")
			}
			// The vLLM pods: by DNS discovery of the headless Service's SRV
			// records (the default), or each by name.
			discovery, _ := f.GetString("service-discovery")
			vsvc := find(docs, "Service", "rel-wfsched-vllm")
			switch discovery {
			case "dns":
				if !strings.Contains(backends, "http://_http._tcp.rel-wfsched-vllm.ns.svc") || dig(vsvc, "spec", "ports", 0, "name") != "http" || dig(vsvc, "spec", "publishNotReadyAddresses") != true {
					t.Errorf("DNS discovery: backends %s, vLLM Service ports %v", backends, dig(vsvc, "spec", "ports"))
				}
			case "static":
				n := dig(sts, "spec", "replicas").(int)
				for i := range n {
					if u := fmt.Sprintf("http://rel-wfsched-vllm-%d.rel-wfsched-vllm.ns.svc:8000", i); !strings.Contains(backends, u) {
						t.Errorf("backends %s lack pod %d (%s)", backends, i, u)
					}
				}
			default:
				t.Errorf("--service-discovery %q", discovery)
			}
			if vsvc == nil || dig(vsvc, "spec", "clusterIP") != "None" {
				t.Error("no headless vLLM Service")
			}
			vc := dig(sts, "spec", "template", "spec", "containers", 0)
			vargs := fmt.Sprint(dig(vc, "args"))
			for _, want := range []string{"--enable-prefix-caching", "--enable-prompt-tokens-details", "--model="} {
				if !strings.Contains(vargs, want) {
					t.Errorf("vLLM args %s lack %s", vargs, want)
				}
			}
			if dig(vc, "resources", "limits", "nvidia.com/gpu") == nil {
				t.Error("vLLM asks for no GPU")
			}
			if tt.set != nil {
				if find(docs, "ServiceMonitor", "rel-wfsched-router") == nil {
					t.Error("no ServiceMonitor")
				}
				if !strings.Contains(backends, "http://other:8000") {
					t.Errorf("backends %s lack the static one", backends)
				}
				if v, _ := f.GetInt("max-connections"); v != 8192 {
					t.Errorf("extraArgs max-connections: %d", v)
				}
				// Replicas share their state in the release's Redis.
				state, _ := f.GetString("state")
				redisSvc := find(docs, "Service", "rel-wfsched-redis")
				redisSts := find(docs, "StatefulSet", "rel-wfsched-redis")
				if state != "redis://rel-wfsched-redis:6379/0" || redisSvc == nil || redisSts == nil || dig(dep, "spec", "replicas") != 3 {
					t.Errorf("3 replicas with the release's Redis: --state %q, Service %v, StatefulSet %v", state, redisSvc != nil, redisSts != nil)
				}
				if dig(redisSvc, "spec", "ports", 0, "port") != 6379 || dig(redisSts, "spec", "template", "spec", "containers", 0, "ports", 0, "containerPort") != 6379 {
					t.Errorf("Redis ports: Service %v, container %v", dig(redisSvc, "spec", "ports"), dig(redisSts, "spec", "template", "spec", "containers", 0, "ports"))
				}
			} else if state, _ := f.GetString("state"); state != "memory" || find(docs, "StatefulSet", "rel-wfsched-redis") != nil {
				t.Errorf("defaults: --state %q, a Redis rendered: %v", state, find(docs, "StatefulSet", "rel-wfsched-redis") != nil)
			}
		})
	}
	// What the chart refuses, with the reason.
	for _, tt := range []struct{ set, want string }{
		{"router.replicas=2", "needs shared state"},
		{"vllm.enabled=false", "no backends"},
		{"workflowSupport.enabled=false", "choose another routingLogic"},
		{"backends.discovery=k8s", "want dns or static"},
	} {
		if _, err := helmTemplate(t, tt.set); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("--set %s: %v, want an error saying %q", tt.set, err, tt.want)
		}
	}
	// An external Redis: replicas use it, and no Redis is rendered.
	docs, err := helmTemplate(t, "router.replicas=2", "redis.url=redis://cache.infra.svc:6379/2")
	if err != nil {
		t.Fatal(err)
	}
	if args := fmt.Sprint(dig(find(docs, "Deployment", "rel-wfsched-router"), "spec", "template", "spec", "containers", 0, "args")); !strings.Contains(args, "--state=redis://cache.infra.svc:6379/2") || find(docs, "StatefulSet", "rel-wfsched-redis") != nil {
		t.Errorf("external Redis: args %s", args)
	}
	// A flag the router does not take fails the args check above.
	docs, err = helmTemplate(t, "router.extraArgs.no-such-flag=1")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range dig(find(docs, "Deployment", "rel-wfsched-router"), "spec", "template", "spec", "containers", 0, "args").([]any) {
		args = append(args, fmt.Sprint(a))
	}
	if err := newRouterCmd().ParseFlags(args[1:]); err == nil {
		t.Error("an unknown router flag passed the check")
	}
}

// The design documents' quick start names --service-discovery static;
// dns resolves the backends' names (and follows them).
func TestServiceDiscoveryFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--service-discovery", "k8s", "--static-backends", "http://127.0.0.1:9"}, "want static (--backends as given) or dns"},
		{[]string{"--service-discovery", "dns", "--backends", "http://no-such-host.invalid:8000"}, "--service-discovery dns: addresses of no-such-host.invalid"},
		{[]string{"--service-discovery", "dns", "--backends", "http://127.0.0.1"}, "give its port"},
		{[]string{"--service-discovery", "dns", "--backends", "http://127.0.0.1:9", "--discovery-interval", "0"}, "want a positive duration"},
	} {
		code, _, stderr := run(t, append([]string{"router"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d: %s (want %q)", c.args, code, stderr, c.want)
		}
	}
	cmd := newRouterCmd()
	if err := cmd.ParseFlags([]string{"--service-discovery", "static", "--static-backends", "http://a:8000", "--static-models", "m", "--workflow-ttl", "3600", "--max-workflows", "1000", "--routing-logic", "workflow_aware"}); err != nil {
		t.Errorf("the quick start's flags: %v", err)
	}
}
