package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from a table that a test changes.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]string
	srv   map[string][]*net.SRV
	fail  bool
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return nil, errors.New("no DNS")
	}
	return r.hosts[host], nil
}

func (r *fakeResolver) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return name, r.srv[name], nil
}

func TestDNSBackends(t *testing.T) {
	r := &fakeResolver{hosts: map[string][]string{"vllm.ns.svc": {"10.0.0.2", "10.0.0.1", "fd00::3"}},
		srv: map[string][]*net.SRV{"_http._tcp.vllm.ns.svc": {{Target: "vllm-0.vllm.ns.svc.", Port: 8000}, {Target: "vllm-1.vllm.ns.svc.", Port: 8001}}}}
	got, err := DNSBackends([]string{"http://vllm.ns.svc:8000/v1", "http://_http._tcp.vllm.ns.svc"}, r)(context.Background())
	want := "[http://10.0.0.1:8000/v1 http://10.0.0.2:8000/v1 http://[fd00::3]:8000/v1 http://vllm-0.vllm.ns.svc:8000 http://vllm-1.vllm.ns.svc:8001]"
	if err != nil || fmt.Sprint(got) != want {
		t.Errorf("got %v %v\nwant %s", got, err, want)
	}
	for _, c := range []struct{ name, want string }{
		{"http://vllm.ns.svc", "give its port"},
		{"http://nothing.ns.svc:8000", "found no backend"},
	} {
		if _, err := DNSBackends([]string{c.name}, r)(context.Background()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// The real resolver, on an address.
	if got, err := DNSBackends([]string{"http://127.0.0.1:9"}, nil)(context.Background()); err != nil || fmt.Sprint(got) != "[http://127.0.0.1:9]" {
		t.Errorf("127.0.0.1: %v %v", got, err)
	}
}

// Backends join and leave as discovery finds them, without a restart:
// the workflows of one that leaves move as on failure, one that joins
// takes new workflows once its health check passes, and one that comes
// back serves again.
func TestDiscoveryJoinLeave(t *testing.T) {
	a, b, c := newFake(t), newFake(t), newFake(t)
	host := func(f *fakeBackend) string { return strings.TrimPrefix(f.URL, "http://") }
	var mu sync.Mutex
	current := []string{a.URL, b.URL}
	discover := func(context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if current == nil {
			return nil, errors.New("lookup failed")
		}
		return append([]string(nil), current...), nil
	}
	set := func(fs ...*fakeBackend) {
		mu.Lock()
		defer mu.Unlock()
		current = nil
		for _, f := range fs {
			if f != nil {
				current = append(current, f.URL)
			}
		}
	}
	rt, url := startRouter(t, Config{Backends: []string{a.URL, b.URL}, Discover: discover, DiscoverInterval: 10 * time.Millisecond, HealthInterval: time.Hour})
	onB := []string{}
	for w := 0; len(onB) < 3 && w < 100; w++ {
		id := fmt.Sprintf("w%d", w)
		completion(t, url, wfBody(id, "x", id))
		if st, _ := rt.Balancer.status(id); st.AssignedInstance == b.URL {
			onB = append(onB, id)
		}
	}
	present := func() string {
		var out []string
		for _, s := range rt.StatsNow().Backends {
			out = append(out, fmt.Sprintf("%s:%v", strings.TrimPrefix(s.URL, "http://"), s.Healthy))
		}
		return fmt.Sprint(out)
	}
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); present() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("backends %s, want %s", present(), want)
			}
		}
	}
	// b leaves, c joins.
	set(a, c)
	waitFor(fmt.Sprintf("[%s:true %s:true]", host(a), host(c)))
	for _, id := range onB {
		if code, out := completion(t, url, wfBody(id, "x", id)); code != 200 || out != sse {
			t.Fatalf("%s after its home left: %d %q", id, code, out)
		}
		if st, _ := rt.Balancer.status(id); st.AssignedInstance == b.URL || st.Migrations != 1 {
			t.Errorf("%s still on the backend that left: %+v", id, st)
		}
	}
	before := c.count()
	for w := 100; w < 110; w++ {
		completion(t, url, wfBody(fmt.Sprintf("w%d", w), "x", "new"))
	}
	if c.count() == before {
		t.Error("the backend that joined took no new workflow")
	}
	// A failed lookup keeps the backends; b comes back.
	set()
	time.Sleep(50 * time.Millisecond)
	waitFor(fmt.Sprintf("[%s:true %s:true]", host(a), host(c)))
	if rt.discoveryErrors.Load() == 0 {
		t.Error("failed lookups not counted")
	}
	set(a, b, c)
	waitFor(fmt.Sprintf("[%s:true %s:true %s:true]", host(a), host(b), host(c)))
	// One that joins unhealthy does not serve until it passes a check.
	c.sick.Store(true)
	set(a, b)
	waitFor(fmt.Sprintf("[%s:true %s:true]", host(a), host(b)))
	set(a, b, c)
	waitFor(fmt.Sprintf("[%s:true %s:true %s:false]", host(a), host(b), host(c)))
}

// Backends joining and leaving while requests are routed: every decision
// names a backend of the set (the race detector watches the rest).
func TestSetBackendsWhileRouting(t *testing.T) {
	bl, err := NewBalancer(Config{Backends: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	sets := [][]string{{"a", "b"}, {"b", "c"}, {"a", "c", "d"}, {"d"}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			bl.SetBackends(sets[k%len(sets)], true)
		}
	}()
	var routed sync.WaitGroup
	for g := 0; g < 4; g++ {
		routed.Add(1)
		go func() {
			defer routed.Done()
			for k := 0; k < 2000; k++ {
				id := fmt.Sprintf("wf-%d-%d", g, k%50)
				d := bl.Route(&Request{Meta: &Metadata{WorkflowID: id}, Session: id})
				if d.Backend < 0 {
					continue
				}
				if d.Backend >= len(bl.list()) {
					t.Errorf("decision names backend %d of %d", d.Backend, len(bl.list()))
					return
				}
				bl.Begin(d.Backend)
				bl.End(d.Backend)
				bl.Finish(id, d.Backend, 10, 5, true)
			}
		}()
	}
	routed.Wait()
	close(stop)
	wg.Wait()
	if n := len(bl.list()); n != 4 {
		t.Errorf("%d backends known, want a, b, c, d", n)
	}
}
