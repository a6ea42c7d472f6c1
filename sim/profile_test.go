package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadProfileFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p, err := LoadProfile(write("fit.json", `{"t_weights_us": 7000, "c_tok_us": 30, "model": "my/model"}`))
	if err != nil {
		t.Fatal(err)
	}
	def := builtin[DefaultProfile]
	if p.TWeights != 7000 || p.CTok != 30 || p.Model != "my/model" || p.TFixed != def.TFixed || p.NumBlocks != def.NumBlocks {
		t.Errorf("profile %+v", p)
	}
	if got := p.TPOT(0); got != (7000+1100)*time.Microsecond+4400*time.Nanosecond {
		t.Errorf("TPOT %v", got)
	}
	for name, data := range map[string]string{
		"unknown.json":  `{"c_tok": 30}`,
		"negative.json": `{"c_kv_us": -1}`,
		"zero.json":     `{"num_blocks": 0}`,
		"bad.json":      `{"c_tok_us": "fast"}`,
	} {
		if _, err := LoadProfile(write(name, data)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	if _, err := LoadProfile("no-such-profile"); err == nil || !strings.Contains(err.Error(), "h100-llama3.1-8b") {
		t.Errorf("unknown name: %v", err)
	}
	for _, name := range Profiles() {
		if p, err := LoadProfile(name); err != nil || p.Validate() != nil {
			t.Errorf("built-in %s: %v", name, err)
		}
	}
}

// The profiles the README's benchmarks name load and validate.
func TestBenchmarkProfiles(t *testing.T) {
	files, _ := filepath.Glob("../benchmarks/profiles/*.json")
	if len(files) == 0 {
		t.Fatal("no profile under benchmarks/profiles")
	}
	for _, f := range files {
		p, err := LoadProfile(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := New(Config{Profile: p}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
