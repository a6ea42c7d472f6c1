package sim

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update", false, "rewrite the generated block of docs/validation.md")

// TestValidationPage keeps the figures of docs/validation.md what the
// profiles compute: for each listed profile, a lone request's prefill of
// 1k and 8k tokens, a decode step alone and at batch 64 (1k tokens of
// context each), each beside its physical floor (FLOPs at the GPU's peak;
// weights and KV read at peak bandwidth). go test ./sim -run
// TestValidationPage -update rewrites the block.
func TestValidationPage(t *testing.T) {
	const path = "../docs/validation.md"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- figures:begin (go test ./sim -run TestValidationPage -update) -->\n", "<!-- figures:end -->"
	doc := string(data)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no generated block", path)
	}
	var b strings.Builder
	b.WriteString("| profile | prefill 1k | prefill 8k | floor 8k | decode, 1 seq | floor | decode, 64 seqs | floor |\n|---|---|---|---|---|---|---|---|\n")
	ms := func(s float64) string { return fmt.Sprintf("%.1f ms", 1000*s) }
	for _, c := range []struct{ name, hw string }{
		{"h100-llama3.1-8b", "h100-llama3.1-8b-tp1-bf16"}, {"h100-llama3.1-8b-tp1-bf16", ""}, {"a100-llama3.1-8b", "a100-llama3.1-8b-tp1-bf16"},
		{"h100-llama3.1-70b-tp4", ""}, {"h200-llama3.1-70b-tp4-fp8", ""}, {"b200-llama3.1-405b-tp8-fp8", ""},
		{"h100-qwen3-30b-a3b", ""}, {"h200-qwen3-235b-a22b-tp8-fp8", ""}, {"h100-gpt-oss-120b", ""}, {"mi300x-llama3.1-70b-tp2", ""}, {"l40s-qwen3-8b", ""},
	} {
		p, err := LoadProfile(c.name)
		if err != nil {
			t.Fatal(err)
		}
		hwName := c.hw
		if hwName == "" {
			hwName = c.name
		}
		h, _, err := HardwareByName(hwName)
		if err != nil {
			t.Fatal(err)
		}
		d, err := h.physics()
		if err != nil {
			t.Fatal(err)
		}
		decodeFloor := func(seqs int) float64 { return d.decodeBytes(seqs, seqs*1024) / d.bw }
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s | %s |\n", c.name,
			ms(p.StepTime(1024, 1024, 1).Seconds()), ms(p.StepTime(8192, 8192, 1).Seconds()), ms(d.prefillFloor(8192)),
			ms(p.StepTime(1, 1024, 1).Seconds()), ms(decodeFloor(1)), ms(p.StepTime(64, 64*1024, 64).Seconds()), ms(decodeFloor(64)))
	}
	got := doc[:i+len(begin)] + b.String() + doc[j:]
	if *updateDocs {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != doc {
		t.Errorf("%s: the generated figures differ from the profiles': run go test ./sim -run TestValidationPage -update", path)
	}
}
