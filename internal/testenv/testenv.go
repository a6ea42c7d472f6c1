// Package testenv locates test inputs that live outside the module: the
// shared third-party traces named by WFSCHED_SHARED_TRACES.
package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// SharedTracesVar names the environment variable that points at the shared
// traces folder. A relative value is taken from the module root, so
// WFSCHED_SHARED_TRACES=../shared/traces works from every package's tests.
const SharedTracesVar = "WFSCHED_SHARED_TRACES"

// SharedTraces returns the shared traces folder. It skips the test when the
// variable is unset and fails it when the variable is set but the folder is
// missing or empty.
func SharedTraces(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(SharedTracesVar)
	if dir == "" {
		t.Skipf("%s is not set", SharedTracesVar)
	}
	if !filepath.IsAbs(dir) {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("%s=%s: %v", SharedTracesVar, dir, err)
		}
		dir = filepath.Join(root, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("%s=%s is set but the traces are missing (%v)", SharedTracesVar, dir, err)
	}
	return dir
}

// SharedFile returns a file under the shared traces folder, failing the test
// when it is missing.
func SharedFile(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(SharedTraces(t), rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared trace %s: %v", rel, err)
	}
	return p
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// Buffer is a bytes.Buffer safe for one goroutine writing (a server's
// output, a logger) while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
