package router

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests of shared state run against a real redis-server (the Debian
// package; .ci/run installs it) on a loopback port. Without one they skip,
// unless WFSCHED_REQUIRE_REDIS is set (as .ci/run sets it): then they fail.

// redisServer is a redis-server this test process started.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

// startRedisServer starts a redis-server on addr (a free loopback port
// when ""), without persistence, and waits until it answers.
func startRedisServer(addr string) (*redisServer, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
	}
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--databases", "4")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c.Ping(context.Background()).Err() == nil {
			return &redisServer{addr: addr, cmd: cmd}, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("redis-server on %s did not answer", addr)
		}
	}
}

// stop kills the server as a crash would.
func (s *redisServer) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// url is its --state URL.
func (s *redisServer) url() string { return "redis://" + s.addr + "/0" }

var (
	sharedRedisOnce sync.Once
	sharedRedis     *redisServer
	sharedRedisErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedRedis != nil {
		sharedRedis.stop()
	}
	os.Exit(code)
}

// needRedis skips (or, with WFSCHED_REQUIRE_REDIS, fails) when err says
// redis-server could not start.
func needRedis(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("WFSCHED_REQUIRE_REDIS") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// testRedis returns the --state URL of the package's redis-server, its
// database emptied.
func testRedis(t *testing.T) string {
	t.Helper()
	sharedRedisOnce.Do(func() { sharedRedis, sharedRedisErr = startRedisServer("") })
	needRedis(t, sharedRedisErr)
	c := redis.NewClient(&redis.Options{Addr: sharedRedis.addr})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return sharedRedis.url()
}

// forEachState runs f with the state in this process and with the state in
// Redis: the same test of both stores.
func forEachState(t *testing.T, f func(t *testing.T, state string)) {
	t.Run("memory", func(t *testing.T) { f(t, "memory") })
	t.Run("redis", func(t *testing.T) { f(t, testRedis(t)) })
}

// waiting tells whether a long poll waits on (workflow, agent).
func waiting(rt *Router, workflow, agent string) bool {
	switch m := rt.mail.(type) {
	case *mailboxes:
		m.mu.Lock()
		defer m.mu.Unlock()
		q := m.q[queueKey{workflow, agent}]
		return q != nil && q.waiters == 1
	case *redisMail:
		m.s.wakeMu.Lock()
		defer m.s.wakeMu.Unlock()
		w := m.s.wakes[workflow+" "+agent]
		return w != nil && w.polls == 1
	}
	return false
}
