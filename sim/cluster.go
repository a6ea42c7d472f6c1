package sim

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// ClusterConfig configures a group of independent engines.
type ClusterConfig struct {
	Engine    Config
	Server    ServerConfig
	Instances int // default 1
	// Listen is the first instance's address; the others take the following
	// ports. Default "127.0.0.1:0": each instance a free loopback port.
	Listen string
}

// Cluster is N engines serving on loopback, for runs and tests.
type Cluster struct {
	servers []*Server
	urls    []string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    []error
}

// Start starts the engines and returns once they listen. Engine i is seeded
// with Seed+i. Close stops them.
func Start(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	n := cfg.Instances
	if n == 0 {
		n = 1
	}
	if n < 0 {
		return nil, fmt.Errorf("instances %d: want at least 1", n)
	}
	addr := cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: bad port", addr)
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &Cluster{cancel: cancel, errs: make([]error, n)}
	for i := 0; i < n; i++ {
		ecfg := cfg.Engine
		ecfg.Seed += uint64(i)
		scfg := cfg.Server
		scfg.Faults.Seed += uint64(i)
		e, err := New(ecfg)
		if err != nil {
			c.Close()
			return nil, err
		}
		srv, err := NewServer(e, scfg)
		if err != nil {
			c.Close()
			return nil, err
		}
		p := 0
		if port != 0 {
			p = port + i
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("instance %d: %w", i, err)
		}
		c.servers = append(c.servers, srv)
		c.urls = append(c.urls, "http://"+ln.Addr().String())
		c.wg.Add(1)
		go func(i int) {
			defer c.wg.Done()
			c.errs[i] = srv.Serve(ctx, ln)
		}(i)
	}
	return c, nil
}

// URLs are the instances' base URLs (http://host:port, no /v1).
func (c *Cluster) URLs() []string { return c.urls }

// Servers are the instances.
func (c *Cluster) Servers() []*Server { return c.servers }

// Close stops every instance and waits for them.
func (c *Cluster) Close() error {
	c.cancel()
	c.wg.Wait()
	for _, err := range c.errs {
		if err != nil {
			return err
		}
	}
	return nil
}
