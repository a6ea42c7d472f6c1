package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPhysicsOfShippedProfiles: every model x GPU x TP x dtype of the
// tables either derives a profile that keeps the physics (CheckPhysics:
// prefill no faster than its FLOPs at peak, decode no faster than reading
// weights and KV at peak bandwidth, KV beside the weights in memory) or
// says why it cannot be deployed (it does not fit, or TP does not divide
// the heads); the built-in profiles keep their hardware's physics too.
func TestPhysicsOfShippedProfiles(t *testing.T) {
	derived, refused := 0, 0
	for _, g := range GPUs() {
		for _, m := range Models() {
			for _, tp := range []int{1, 2, 4, 8} {
				for _, dt := range []string{"bf16", "fp8", "mxfp4"} {
					h := Hardware{Model: models[m], GPU: gpus[g], TP: tp, Dtype: dt, KVType: "bf16", MemUtil: 0.9}
					if dt == "fp8" {
						h.KVType = "fp8"
					}
					p, err := Derive(h)
					if err != nil {
						if !strings.Contains(err.Error(), "does not fit") && !strings.Contains(err.Error(), "does not divide") {
							t.Errorf("%s: %v", h.name(), err)
						}
						refused++
						continue
					}
					derived++
					if err := p.Validate(); err != nil {
						t.Errorf("%s: %v", p.Name, err)
					}
					if err := CheckPhysics(p, h); err != nil {
						t.Errorf("%s: %v", p.Name, err)
					}
				}
			}
		}
	}
	t.Logf("%d deployments derived and within the physics, %d refused with the reason", derived, refused)
	if derived < 300 {
		t.Errorf("only %d deployments derived", derived)
	}
	for name, gpu := range map[string]string{"h100-llama3.1-8b": "h100", "a100-llama3.1-8b": "a100"} {
		h := Hardware{Model: models["llama3.1-8b"], GPU: gpus[gpu], TP: 1, Dtype: "bf16", KVType: "bf16", MemUtil: 0.9}
		if err := CheckPhysics(builtin[name], h); err != nil {
			t.Errorf("built-in %s: %v", name, err)
		}
	}
}

// TestDerivedMatchesBuiltin: the efficiency factors are set from the
// built-in Llama-3.1-8B profiles; the derived ones land within 10% of
// their step times (decode at batch 1 and 64, an 8k prefill) and KV
// capacity.
func TestDerivedMatchesBuiltin(t *testing.T) {
	for _, gpu := range []string{"h100", "a100"} {
		b := builtin[gpu+"-llama3.1-8b"]
		d, err := LoadProfile(gpu + "-llama3.1-8b-tp1-bf16")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range [][3]int{{1, 1000, 1}, {64, 64 * 2048, 64}, {8192, 8192, 1}} {
			bt, dt := b.StepTime(c[0], c[1], c[2]).Seconds(), d.StepTime(c[0], c[1], c[2]).Seconds()
			if dt < 0.9*bt || dt > 1.1*bt {
				t.Errorf("%s: step of %v: derived %.4g s, built-in %.4g s", gpu, c, dt, bt)
			}
		}
		if r := float64(d.NumBlocks) / float64(b.NumBlocks); r < 0.9 || r > 1.1 {
			t.Errorf("%s: %d KV blocks derived, %d built in", gpu, d.NumBlocks, b.NumBlocks)
		}
	}
}

// TestProfileForms: a derived name, a description file with a model's
// config.json, and a coefficient file that claims hardware it is faster
// than (refused with the reason).
func TestProfileForms(t *testing.T) {
	p, err := LoadProfile("h200-llama3.1-70b-tp4-fp8")
	if err != nil || p.Hardware == nil || p.Hardware.TP != 4 || p.Model != "meta-llama/Llama-3.1-70B-Instruct" {
		t.Fatalf("derived name: %+v, %v", p, err)
	}
	if _, err := LoadProfile("h100-llama3.1-405b"); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("405B in BF16 on one H100: %v", err)
	}
	if _, err := LoadProfile("h100-llama3.1-70b-tp3"); err == nil || !strings.Contains(err.Error(), "does not divide") {
		t.Errorf("TP 3 of 64 heads: %v", err)
	}
	dir := t.TempDir()
	cfg := `{"num_hidden_layers": 28, "hidden_size": 3072, "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128,
		"intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": true, "max_position_embeddings": 131072}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644)
	os.WriteFile(filepath.Join(dir, "llama3b.json"), []byte(`{"gpu": "l40s", "model": "config.json", "dtype": "fp8"}`), 0o644)
	p, err = LoadProfile(filepath.Join(dir, "llama3b.json"))
	if err != nil || p.Hardware.GPU.Name != "l40s" || p.Hardware.Model.Layers != 28 || CheckPhysics(p, *p.Hardware) != nil {
		t.Fatalf("description with a config.json: %+v, %v", p, err)
	}
	if got := totalParams(p.Hardware.Model) / 1e9; got < 3.1 || got > 3.3 {
		t.Errorf("Llama-3.2-3B's config gives %.2fB parameters, want about 3.2B", got)
	}
	fast := `{"name": "too fast", "model": "m", "t_weights_us": 1000, "c_tok_us": 1,
		"hardware": {"model": {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 128256},
		"gpu": {"name": "h100", "bf16_tflops": 989, "hbm_tb_s": 3.35, "memory_gb": 80}, "tp": 1, "dtype": "bf16", "kv_dtype": "bf16", "gpu_memory_utilization": 0.9}}`
	os.WriteFile(filepath.Join(dir, "fast.json"), []byte(fast), 0o644)
	if _, err := LoadProfile(filepath.Join(dir, "fast.json")); err == nil || !strings.Contains(err.Error(), "breaks the physics") || !strings.Contains(err.Error(), "c_tok_us") {
		t.Errorf("a profile faster than its hardware: %v", err)
	}
}

// TestPrintedProfileReloads: what --print-profile writes of a derived
// profile loads back as the same profile, held to its hardware.
func TestPrintedProfileReloads(t *testing.T) {
	for _, name := range []string{"h200-llama3.1-70b-tp4-fp8", "h100-qwen3-30b-a3b"} {
		p, err := LoadProfile(name)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "p.json")
		f, _ := os.Create(path)
		p.WriteJSON(f)
		f.Close()
		q, err := LoadProfile(path)
		if err != nil {
			t.Fatalf("%s reloaded: %v", name, err)
		}
		q.Name, q.Source = p.Name, p.Source
		for _, c := range [][3]int{{1, 1000, 1}, {64, 64 * 2048, 64}, {8192, 8192, 1}} {
			if p.StepTime(c[0], c[1], c[2]) != q.StepTime(c[0], c[1], c[2]) {
				t.Errorf("%s: step %v differs after reloading", name, c)
			}
		}
		if q.NumBlocks != p.NumBlocks || q.Hardware == nil || q.Hardware.TP != p.Hardware.TP {
			t.Errorf("%s reloaded as %+v", name, q)
		}
	}
}
