package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Profile is the hardware and model the engine models. Step time follows
// the form of calibrated simulators (BLIS, Vidur):
//
//	step = TFixed + max(TWeights + TExperts*Touched(T), CTok*T) + CKV*K + CReq*B + CComm*T
//
// where T is the tokens computed in the step (prefill chunks plus one per
// decoding sequence; cached prompt tokens are not computed), K the sum of the
// context lengths the step's sequences read, and B the number of sequences.
// For a mixture of experts, Touched(T) is the share of the experts T
// tokens touch (each routed to ExpertShare of them); CComm is the
// tensor-parallel all-reduces' cost per token.
type Profile struct {
	Name  string `json:"name"`
	Model string `json:"model"` // the served model name

	TWeights Micros `json:"t_weights_us"` // decode floor: weights read once per step
	TFixed   Micros `json:"t_fixed_us"`   // per-step overhead
	CTok     Micros `json:"c_tok_us"`     // compute per token
	CKV      Micros `json:"c_kv_us"`      // per context token read
	CReq     Micros `json:"c_req_us"`     // per sequence in the step
	// A mixture of experts: reading all experts' weights, and the share
	// of them one token is routed to.
	TExperts    Micros  `json:"t_experts_us,omitempty"`
	ExpertShare float64 `json:"expert_share,omitempty"`
	CComm       Micros  `json:"c_comm_us,omitempty"` // tensor-parallel communication per token

	BlockSize           int `json:"block_size"`
	NumBlocks           int `json:"num_blocks"` // KV-cache capacity in blocks
	MaxNumSeqs          int `json:"max_num_seqs"`
	MaxNumBatchedTokens int `json:"max_num_batched_tokens"`
	MaxModelLen         int `json:"max_model_len"`

	Source string `json:"source,omitempty"` // where the numbers come from
	// Hardware is what the profile runs: a derived profile's description,
	// or a file's claim, which CheckPhysics holds it to.
	Hardware *Hardware `json:"hardware,omitempty"`
}

// Micros is a duration written in JSON as microseconds.
type Micros float64

// D returns m as a time.Duration.
func (m Micros) D() time.Duration { return time.Duration(float64(m) * float64(time.Microsecond)) }

// DefaultProfile names the built-in profile used when none is given.
const DefaultProfile = "h100-llama3.1-8b"

// The built-in profiles: Llama-3.1-8B in BF16 on one GPU, derived from
// Vidur's published operator profiles, datasheet bandwidth and BLIS's
// fitted overheads (see ../shared/reference/engine-model.md as summarized in
// docs/engine.md). KV capacity is about 400k tokens at 0.9 memory utilization
// (128 KiB per token). Scheduler limits are vLLM's usual single-GPU serving
// settings.
var builtin = map[string]Profile{
	"h100-llama3.1-8b": {
		Name: "h100-llama3.1-8b", Model: "meta-llama/Llama-3.1-8B-Instruct",
		TWeights: 6500, TFixed: 1100, CTok: 25, CKV: 0.076, CReq: 4.4,
		BlockSize: 16, NumBlocks: 25_000, MaxNumSeqs: 256, MaxNumBatchedTokens: 8192, MaxModelLen: 131_072,
		Source: "Vidur operator profiles, H100-SXM datasheet bandwidth, BLIS fitted overheads",
	},
	"a100-llama3.1-8b": {
		Name: "a100-llama3.1-8b", Model: "meta-llama/Llama-3.1-8B-Instruct",
		TWeights: 9800, TFixed: 1100, CTok: 70, CKV: 0.125, CReq: 4.4,
		BlockSize: 16, NumBlocks: 25_000, MaxNumSeqs: 256, MaxNumBatchedTokens: 8192, MaxModelLen: 131_072,
		Source: "Vidur operator profiles, A100-SXM datasheet bandwidth, BLIS fitted overheads",
	},
}

// Profiles lists the built-in profile names.
func Profiles() []string {
	names := make([]string, 0, len(builtin))
	for n := range builtin {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// BuiltinProfile returns a built-in profile by name.
func BuiltinProfile(name string) (Profile, error) {
	p, ok := builtin[name]
	if !ok {
		return Profile{}, fmt.Errorf("unknown profile %q (built-in: %s; or give a file)", name, strings.Join(Profiles(), ", "))
	}
	return p, nil
}

// LoadProfile returns the built-in profile called name, or reads a JSON
// profile file. A file's missing fields take the default profile's values,
// so a user can paste only the fitted coefficients.
func LoadProfile(name string) (Profile, error) {
	if p, ok := builtin[name]; ok {
		return p, nil
	}
	if h, ok, err := HardwareByName(name); ok || err != nil {
		if err != nil {
			return Profile{}, err
		}
		return Derive(h)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		if os.IsNotExist(err) {
			return Profile{}, fmt.Errorf("unknown profile %q (built-in: %s; derived: GPU-MODEL[-tpN][-bf16|fp8] with a GPU of %s and a model of %s; or a file)",
				name, strings.Join(Profiles(), ", "), strings.Join(GPUs(), ", "), strings.Join(Models(), ", "))
		}
		return Profile{}, err
	}
	// A description (a GPU and a model) is derived from.
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) == nil && probe["gpu"] != nil && probe["t_weights_us"] == nil {
		h, err := readHardware(data, filepath.Dir(name))
		if err != nil {
			return Profile{}, fmt.Errorf("profile %s: %w", name, err)
		}
		p, err := Derive(h)
		if err != nil {
			return Profile{}, fmt.Errorf("profile %s: %w", name, err)
		}
		return p, nil
	}
	p := builtin[DefaultProfile]
	p.Name, p.Source, p.Hardware = name, "file "+name, nil
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Profile{}, fmt.Errorf("profile %s: %w", name, err)
	}
	if err := p.Validate(); err != nil {
		return Profile{}, fmt.Errorf("profile %s: %w", name, err)
	}
	if p.Hardware != nil {
		if err := CheckPhysics(p, *p.Hardware); err != nil {
			return Profile{}, fmt.Errorf("profile %s breaks the physics of its hardware: %w", name, err)
		}
	}
	return p, nil
}

// Validate checks that every coefficient and limit is usable.
func (p Profile) Validate() error {
	for _, c := range []struct {
		name string
		v    float64
	}{{"t_weights_us", float64(p.TWeights)}, {"t_fixed_us", float64(p.TFixed)}, {"c_tok_us", float64(p.CTok)}, {"c_kv_us", float64(p.CKV)}, {"c_req_us", float64(p.CReq)},
		{"t_experts_us", float64(p.TExperts)}, {"c_comm_us", float64(p.CComm)}} {
		if c.v < 0 {
			return fmt.Errorf("%s = %v: must not be negative", c.name, c.v)
		}
	}
	if p.ExpertShare < 0 || p.ExpertShare > 1 {
		return fmt.Errorf("expert_share = %v: want a share of the experts, 0 to 1", p.ExpertShare)
	}
	if p.TWeights+p.TFixed+p.CTok <= 0 {
		return fmt.Errorf("a step would take no time: set t_weights_us, t_fixed_us or c_tok_us")
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"block_size", p.BlockSize}, {"num_blocks", p.NumBlocks}, {"max_num_seqs", p.MaxNumSeqs}, {"max_num_batched_tokens", p.MaxNumBatchedTokens}, {"max_model_len", p.MaxModelLen}} {
		if c.v <= 0 {
			return fmt.Errorf("%s = %d: must be positive", c.name, c.v)
		}
	}
	if p.Model == "" {
		return fmt.Errorf("model: must name the served model")
	}
	return nil
}

// StepTime is the modeled duration of a step computing tokens tokens for
// seqs sequences that read ctx context tokens in all.
func (p *Profile) StepTime(tokens, ctx, seqs int) time.Duration {
	weights := float64(p.TWeights)
	if p.TExperts > 0 {
		weights += float64(p.TExperts) * Touched(tokens, p.ExpertShare)
	}
	us := float64(p.TFixed) + max(weights, float64(p.CTok)*float64(tokens)) +
		float64(p.CKV)*float64(ctx) + float64(p.CReq)*float64(seqs) + float64(p.CComm)*float64(tokens)
	return time.Duration(us * float64(time.Microsecond))
}

// TPOT is the modeled time per output token of a lone decoding sequence with
// ctx context tokens.
func (p *Profile) TPOT(ctx int) time.Duration { return p.StepTime(1, ctx, 1) }

// WriteJSON writes the profile as indented JSON.
func (p Profile) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}
