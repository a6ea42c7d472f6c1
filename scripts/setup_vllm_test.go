// Package scripts holds the project's shell scripts; this test runs
// setup_vllm.sh in its dry-run mode, which prints the docker commands it
// would run.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func dryRun(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"setup_vllm.sh"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestStartDryRun(t *testing.T) {
	out, err := dryRun(t, []string{"HF_TOKEN=secret-token-value", "CACHE_DIR=/data/hf"}, "start", "--dry-run", "--instances", "2", "--profile", "production")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var docker []string
	for _, l := range lines {
		if strings.HasPrefix(l, "+ docker run") {
			docker = append(docker, l)
		}
	}
	if len(docker) != 2 {
		t.Fatalf("want 2 docker run commands:\n%s", out)
	}
	for i, want := range [][]string{
		{"--name wfsched-vllm-0", `device=0\"`, "127.0.0.1:8000:8000"},
		{"--name wfsched-vllm-1", `device=1\"`, "127.0.0.1:8001:8000"},
	} {
		for _, w := range append(want, "--enable-prefix-caching", "--enable-prompt-tokens-details", "--max-model-len 16384",
			"--max-num-seqs 128", "--gpu-memory-utilization 0.92", "-v /data/hf:/root/.cache/huggingface", "-e HF_TOKEN vllm/vllm-openai:") {
			if !strings.Contains(docker[i], w) {
				t.Errorf("command %d lacks %q:\n%s", i, w, docker[i])
			}
		}
	}
	if strings.Contains(out, "secret-token-value") {
		t.Error("the Hugging Face token is printed")
	}
	if !strings.Contains(out, "--endpoint http://127.0.0.1:8000 --endpoint http://127.0.0.1:8001 --routing-logic workflow-aware") {
		t.Errorf("no wfsched command for the router:\n%s", out)
	}
}

func TestProfilesAndOverrides(t *testing.T) {
	out, err := dryRun(t, nil, "start", "--dry-run", "--profile", "multi-gpu")
	if err != nil || !strings.Contains(out, `device=0\,1\,2\,3\"`) || !strings.Contains(out, "--tensor-parallel-size 4") || !strings.Contains(out, "Llama-3.1-70B") {
		t.Errorf("multi-gpu: %v\n%s", err, out)
	}
	out, err = dryRun(t, []string{"MODEL=Qwen/Qwen2.5-7B-Instruct", "PORT=9000", "MAX_NUM_SEQS=8"}, "start", "--dry-run")
	if err != nil || !strings.Contains(out, "--model Qwen/Qwen2.5-7B-Instruct") || !strings.Contains(out, "127.0.0.1:9000:8000") || !strings.Contains(out, "--max-num-seqs 8") {
		t.Errorf("overrides: %v\n%s", err, out)
	}
	for _, c := range []string{"stop", "logs", "status"} {
		out, err := dryRun(t, nil, c, "--dry-run", "--instances", "3")
		if err != nil || strings.Count(out, "+ docker") != 3 {
			t.Errorf("%s: %v\n%s", c, err, out)
		}
	}
}

func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"start", "--profile", "huge", "--dry-run"}, {"start", "--instances", "0", "--dry-run"}, {"start", "--bogus"}, {}} {
		out, err := dryRun(t, nil, args...)
		if err == nil || !strings.Contains(out, "setup_vllm") && !strings.Contains(out, "Usage") && !strings.Contains(out, "usage") && !strings.Contains(out, "setup_vllm.sh") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

// TestCheckTree: check_tree.sh passes this repository, and fails a tree
// that tracks a file over 1 MB or an executable, naming them.
func TestCheckTree(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	if out, err := exec.Command("bash", "check_tree.sh", "..").CombinedOutput(); err != nil {
		t.Errorf("this repository: %v\n%s", err, out)
	}
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	git("init", "-q")
	os.WriteFile(filepath.Join(dir, "small.txt"), []byte("fine\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "big.dat"), make([]byte, 1<<20+1), 0o644)
	os.WriteFile(filepath.Join(dir, "prog"), append([]byte("\x7fELF"), make([]byte, 100)...), 0o755)
	git("add", ".")
	abs, _ := filepath.Abs("check_tree.sh")
	out, err := exec.Command("bash", abs, dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "over 1 MB: big.dat") || !strings.Contains(string(out), "executable binary: prog") || strings.Contains(string(out), "small.txt") {
		t.Errorf("a tree with a big file and a binary: %v\n%s", err, out)
	}
}

// TestPrototypeHabits: what users of the prototype's setup_vllm.sh type.
func TestPrototypeHabits(t *testing.T) {
	// No command starts the server. A fake docker that answers nothing
	// stops it at the first check, whatever this machine has installed.
	fake := t.TempDir()
	os.WriteFile(filepath.Join(fake, "docker"), []byte("#!/bin/sh\necho fake docker >&2\nexit 1\n"), 0o755)
	out, err := dryRun(t, []string{"PATH=" + fake + ":/usr/bin:/bin"})
	if err == nil || !strings.Contains(out, "the Docker engine is not running") {
		t.Errorf("no arguments: %v\n%s", err, out)
	}
	// --dry-run alone, or before the command, is a dry start.
	for _, args := range [][]string{{"--dry-run"}, {"--dry-run", "start"}, {"--instances", "2", "start", "--dry-run"}} {
		out, err := dryRun(t, []string{"HF_TOKEN=x"}, args...)
		if err != nil || !strings.Contains(out, "+ docker run -d --name wfsched-vllm-0") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	// The environment overrides of the prototype's troubleshooting guide.
	out, err = dryRun(t, []string{"GPU_MEMORY_UTIL=0.85", "MAX_NUM_SEQS=32", "MAX_MODEL_LEN=4096", "MODEL=Qwen/Qwen2.5-7B-Instruct", "PORT=9000"}, "--dry-run")
	for _, want := range []string{"--gpu-memory-utilization 0.85", "--max-num-seqs 32", "--max-model-len 4096", "--model Qwen/Qwen2.5-7B-Instruct", "-p 127.0.0.1:9000:8000"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("environment overrides: want %q in\n%s (%v)", want, out, err)
		}
	}
	// --help is the header comment and nothing of the script after it.
	out, err = dryRun(t, nil, "--help")
	if err != nil || !strings.Contains(out, "Environment variables override a profile") || strings.Contains(out, "set -euo") || strings.Contains(out, "usage()") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	// logs follows, unless told not to.
	out, _ = dryRun(t, nil, "logs", "--dry-run")
	if !strings.Contains(out, "docker logs --follow --tail 100 wfsched-vllm-0") {
		t.Errorf("logs: %s", out)
	}
	out, _ = dryRun(t, nil, "logs", "--dry-run", "--no-follow")
	if strings.Contains(out, "--follow") || !strings.Contains(out, "docker logs --tail 100 wfsched-vllm-0") {
		t.Errorf("logs --no-follow: %s", out)
	}
	if out, err := dryRun(t, nil, "stop", "start"); err == nil || !strings.Contains(out, "two commands") {
		t.Errorf("two commands: %v %s", err, out)
	}
}
