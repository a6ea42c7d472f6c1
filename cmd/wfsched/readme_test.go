package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// shBlocks returns the ```sh blocks of README.md and docs/*.md, one
// slice of lines each.
func shBlocks(t *testing.T) [][]string {
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, name := range append([]string{"../../README.md"}, docs...) {
		if filepath.Base(name) == "cli.md" {
			continue // the commands' help, generated: its examples are the help's
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, b...), '\n')
	}
	var blocks [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(string(all), "\n") {
		switch {
		case !in && strings.HasPrefix(line, "```sh"):
			in, cur = true, nil
		case in && strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

var listenFlag = regexp.MustCompile(`--listen (\S+)`)

// TestREADMEServerExamples runs, with their exact commands, every example
// in README.md and docs/ that starts servers: from the line that starts the first server
// (a command ending in &) to the end of its block. Servers run in-process
// until the block ends; `run` writes into a temporary folder; curl lines
// must get 200.
func TestREADMEServerExamples(t *testing.T) {
	ran := 0
	for _, block := range shBlocks(t) {
		first := -1
		for i, line := range block {
			if strings.Contains(stripComment(line), "&") {
				first = i
				break
			}
		}
		if first < 0 {
			continue
		}
		ran++
		t.Run(stripComment(block[first]), func(t *testing.T) { runServerBlock(t, block[first:]) })
	}
	if ran < 2 {
		t.Errorf("found %d examples in README.md and docs/ that start servers, want at least 2 (the router's and run's)", ran)
	}
}

func stripComment(line string) string {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

func runServerBlock(t *testing.T, lines []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	out := t.TempDir()
	for _, line := range lines {
		line = stripComment(line)
		if line == "" {
			continue
		}
		cmds := strings.Split(line, "&")
		for k, c := range cmds {
			c = strings.TrimSpace(c)
			if c == "" {
				continue
			}
			background := k < len(cmds)-1
			args := strings.Fields(c)
			for i, a := range args {
				if a == "''" {
					args[i] = "" // the shell's empty argument
				}
			}
			switch {
			case args[0] == "redis-server" && background:
				path, err := exec.LookPath("redis-server")
				if err != nil {
					if os.Getenv("WFSCHED_REQUIRE_REDIS") != "" {
						t.Fatalf("%s: redis-server is not installed", c)
					}
					t.Skipf("%s: redis-server is not installed (.ci/run installs it)", c)
				}
				addr := "127.0.0.1:6379"
				for i, a := range args {
					if a == "--port" && i+1 < len(args) {
						addr = "127.0.0.1:" + args[i+1]
					}
				}
				if ln, err := net.Listen("tcp", addr); err != nil {
					t.Skipf("%s is taken on this machine, so %q cannot run here", addr, c)
				} else {
					ln.Close()
				}
				cmd := exec.CommandContext(ctx, path, append(args[1:], "--bind", "127.0.0.1")...)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() { defer wg.Done(); cmd.Wait() }()
				waitListening(t, addr)
				continue
			case args[0] == "curl":
				url := args[len(args)-1]
				if !strings.HasPrefix(url, "http") {
					url = "http://" + url
				}
				resp, err := http.Get(url)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("%s: %v %v", c, resp, err)
				}
				resp.Body.Close()
			case args[0] == "bin/wfsched":
				args = args[1:]
				for i, a := range args {
					if strings.HasPrefix(a, "traces/") {
						args[i] = "../../" + a
					}
				}
				if background {
					addr := map[string]string{"sim": "127.0.0.1:8000", "router": "127.0.0.1:8001"}[args[0]]
					if m := listenFlag.FindStringSubmatch(c); m != nil {
						addr = m[1]
					}
					if ln, err := net.Listen("tcp", addr); err != nil {
						t.Skipf("%s is taken on this machine, so %q cannot run here", addr, c)
					} else {
						ln.Close()
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						var o, e bytes.Buffer
						if code := execute(ctx, args, &o, &e); code != 0 {
							t.Errorf("%s: exit %d: %s%s", c, code, o.String(), e.String())
						}
					}()
					waitListening(t, addr)
					continue
				}
				if args[0] == "run" {
					args = append(args, "--out", out)
				}
				var o, e bytes.Buffer
				if code := execute(ctx, args, &o, &e); code != 0 {
					t.Fatalf("%s: exit %d: %s%s", c, code, o.String(), e.String())
				}
				if args[0] == "run" && !strings.Contains(o.String(), "outcome") {
					t.Errorf("%s printed no summary:\n%s", c, o.String())
				}
			default:
				t.Fatalf("README example %q: not a command this test can run", c)
			}
		}
	}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after 10 s", addr)
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdFence   = regexp.MustCompile("(?s)```.*?```")
	mdHeading = regexp.MustCompile(`(?m)^#+ (.+)$`)
	notAnchor = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
)

// TestDocLinks: every relative link in README.md, CONTRIBUTING.md,
// CHANGELOG.md and docs/ names a file that exists, and a heading in it when
// it names one (GitHub's anchors).
func TestDocLinks(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	files := append([]string{"../../README.md", "../../CONTRIBUTING.md", "../../CHANGELOG.md"}, docs...)
	anchors := func(path string) map[string]bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		out := map[string]bool{}
		for _, m := range mdHeading.FindAllStringSubmatch(mdFence.ReplaceAllString(string(b), ""), -1) {
			a := notAnchor.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), "")
			out[strings.ReplaceAll(a, " ", "-")] = true
		}
		return out
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(mdFence.ReplaceAllString(string(b), ""), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p, frag, _ := strings.Cut(target, "#")
			path := f
			if p != "" {
				path = filepath.Join(filepath.Dir(f), p)
			}
			checked++
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %s: no such file", f, target)
				continue
			}
			if frag != "" && strings.HasSuffix(path, ".md") && !anchors(path)[frag] {
				t.Errorf("%s: link %s: no heading #%s in %s", f, target, frag, path)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d links checked", checked)
	}
}
