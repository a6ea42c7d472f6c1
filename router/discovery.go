package router

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultDiscoverInterval is how often service discovery looks again.
const DefaultDiscoverInterval = 5 * time.Second

// Resolver is what DNS discovery asks (net.DefaultResolver; tests give
// their own).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// DNSBackends returns a discovery function over names, base URLs whose
// host is a DNS name: each is resolved to its A and AAAA records (one
// backend per address, with the URL's scheme and port: a Kubernetes
// headless Service of vLLM pods), or, for a host starting with an
// underscore (_http._tcp.vllm.ns.svc), to its SRV records (one backend per
// target and port). The URL's path, if any, is kept.
func DNSBackends(names []string, r Resolver) func(ctx context.Context) ([]string, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	return func(ctx context.Context) ([]string, error) {
		seen := map[string]bool{}
		var out []string
		for _, name := range names {
			u, err := url.Parse(name)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("backend %q: want a URL such as http://vllm.ns.svc:8000", name)
			}
			var hosts []string // host:port
			if host := u.Hostname(); strings.HasPrefix(host, "_") {
				_, srvs, err := r.LookupSRV(ctx, "", "", host)
				if err != nil {
					return nil, fmt.Errorf("SRV records of %s: %w", host, err)
				}
				for _, s := range srvs {
					hosts = append(hosts, net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port))))
				}
			} else {
				port := u.Port()
				if port == "" {
					return nil, fmt.Errorf("backend %s: give its port (http://%s:8000), or an SRV name (_http._tcp.%s)", name, host, host)
				}
				addrs, err := r.LookupHost(ctx, host)
				if err != nil {
					return nil, fmt.Errorf("addresses of %s: %w", host, err)
				}
				for _, a := range addrs {
					hosts = append(hosts, net.JoinHostPort(a, port))
				}
			}
			for _, h := range hosts {
				b := u.Scheme + "://" + h + strings.TrimSuffix(u.Path, "/")
				if !seen[b] {
					seen[b] = true
					out = append(out, b)
				}
			}
		}
		if len(out) == 0 {
			return nil, errors.New("service discovery found no backend")
		}
		sort.Strings(out)
		return out, nil
	}
}

// discover looks for the backends every DiscoverInterval until ctx is
// done. A failed or empty answer keeps the backends as they are (logged
// once until an answer comes, and counted).
func (rt *Router) discover(ctx context.Context) {
	t := time.NewTicker(rt.cfg.DiscoverInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		dctx, cancel := context.WithTimeout(ctx, rt.cfg.DiscoverInterval)
		urls, err := rt.cfg.Discover(dctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			rt.discoveryErrors.Add(1)
			if !failing {
				log.Printf("wfsched router: service discovery: %v; the backends stay as they were", err)
			}
			failing = true
			continue
		}
		failing = false
		rt.useBackends(ctx, urls)
	}
}

// useBackends makes urls the backends present: those that join (or come
// back) serve once their health check passes; those that leave take their
// workflows' homes with them, as on failure.
func (rt *Router) useBackends(ctx context.Context, urls []string) {
	rt.joinMu.Lock()
	defer rt.joinMu.Unlock()
	joined, back := rt.SetBackends(urls, false)
	for _, b := range joined {
		rt.m.addBackend(rt, b)
	}
	if len(joined)+len(back) > 0 {
		rt.probe(ctx, append(joined, back...), 1)
	}
}
