package sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Profiles derived from what the model and the GPU are: the model's
// architecture (the fields of its Hugging Face config.json), the GPU's
// datasheet figures, the tensor-parallel degree and the weight and KV
// dtypes give the step-time coefficients and the KV capacity, with the
// efficiency factors below. Derive is the one place this is computed;
// CheckPhysics the one place its floors are checked.

// Arch is a model's architecture, as its config.json states it.
type Arch struct {
	Name               string `json:"name,omitempty"`    // a short key (llama3.1-70b)
	HFName             string `json:"hf_name,omitempty"` // the served model name
	Layers             int    `json:"num_hidden_layers"`
	Hidden             int    `json:"hidden_size"`
	Heads              int    `json:"num_attention_heads"`
	KVHeads            int    `json:"num_key_value_heads"`
	HeadDim            int    `json:"head_dim"`          // 0: hidden / heads
	Intermediate       int    `json:"intermediate_size"` // the dense MLP's width
	Vocab              int    `json:"vocab_size"`
	Tied               bool   `json:"tie_word_embeddings"`
	MaxPosition        int    `json:"max_position_embeddings"`
	Experts            int    `json:"num_experts"`         // 0: dense (also read as num_local_experts)
	ExpertsPerToken    int    `json:"num_experts_per_tok"` // (also experts_per_token)
	ExpertIntermediate int    `json:"moe_intermediate_size"`
	// NativeDtype is the dtype the published weights are in, when not
	// BF16 (gpt-oss: its experts in MXFP4).
	NativeDtype string `json:"native_dtype,omitempty"`
}

// UnmarshalJSON reads a config.json, with the names different families use.
func (a *Arch) UnmarshalJSON(b []byte) error {
	type plain Arch
	var alt struct {
		LocalExperts     int `json:"num_local_experts"`
		ExpertsPerToken2 int `json:"experts_per_token"`
	}
	if err := json.Unmarshal(b, (*plain)(a)); err != nil {
		return err
	}
	json.Unmarshal(b, &alt)
	if a.Experts == 0 {
		a.Experts = alt.LocalExperts
	}
	if a.ExpertsPerToken == 0 {
		a.ExpertsPerToken = alt.ExpertsPerToken2
	}
	return nil
}

func (a Arch) headDim() int {
	if a.HeadDim > 0 {
		return a.HeadDim
	}
	return a.Hidden / a.Heads
}

// expertWidth is an expert's MLP width.
func (a Arch) expertWidth() int {
	if a.ExpertIntermediate > 0 {
		return a.ExpertIntermediate
	}
	return a.Intermediate
}

// Params counts the model's parameters: attention and dense MLP (or
// router) per layer, the experts' (all of them), and the embeddings (the
// input table, and the output head unless tied).
func (a Arch) Params() (dense, experts, embed float64) {
	h, hd := float64(a.Hidden), float64(a.headDim())
	attn := h*float64(a.Heads)*hd*2 + h*float64(a.KVHeads)*hd*2 // q, o; k, v
	mlp := 3 * h * float64(a.Intermediate)                      // gate, up, down
	if a.Experts > 0 {
		mlp = h * float64(a.Experts) // the router
		experts = float64(a.Layers) * float64(a.Experts) * 3 * h * float64(a.expertWidth())
	}
	dense = float64(a.Layers) * (attn + mlp)
	embed = float64(a.Vocab) * h
	if !a.Tied {
		embed *= 2
	}
	return dense, experts, embed
}

// ActiveParams are the parameters one token computes with: the dense
// part, its experts' share, and the output head (the input embedding is a
// lookup).
func (a Arch) ActiveParams() float64 {
	dense, experts, _ := a.Params()
	active := dense + float64(a.Vocab)*float64(a.Hidden)
	if a.Experts > 0 {
		active += experts * float64(a.ExpertsPerToken) / float64(a.Experts)
	}
	return active
}

func (a Arch) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"num_hidden_layers", a.Layers}, {"hidden_size", a.Hidden}, {"num_attention_heads", a.Heads}, {"num_key_value_heads", a.KVHeads}, {"vocab_size", a.Vocab}} {
		if f.v <= 0 {
			return fmt.Errorf("model %s: %s = %d: must be positive", a.Name, f.name, f.v)
		}
	}
	if a.Intermediate <= 0 && a.Experts == 0 {
		return fmt.Errorf("model %s: intermediate_size must be positive", a.Name)
	}
	if a.Experts > 0 && (a.ExpertsPerToken <= 0 || a.ExpertsPerToken > a.Experts || a.expertWidth() <= 0) {
		return fmt.Errorf("model %s: a mixture of experts needs num_experts_per_tok in 1..num_experts and moe_intermediate_size", a.Name)
	}
	return nil
}

// GPU is one accelerator's datasheet figures (dense, without sparsity).
type GPU struct {
	Name       string  `json:"name"`
	BF16TFLOPS float64 `json:"bf16_tflops"`
	FP8TFLOPS  float64 `json:"fp8_tflops"` // 0: no FP8 compute (weights in FP8 are widened)
	HBMTBs     float64 `json:"hbm_tb_s"`   // memory bandwidth, TB/s
	MemoryGB   float64 `json:"memory_gb"`  // memory, GB (10^9 bytes)
	LinkGBs    float64 `json:"link_gb_s"`  // GPU-to-GPU bandwidth per direction, GB/s
	Source     string  `json:"source,omitempty"`
}

// The GPUs' datasheet figures.
var gpus = map[string]GPU{
	"h100":   {Name: "h100", BF16TFLOPS: 989, FP8TFLOPS: 1979, HBMTBs: 3.35, MemoryGB: 80, LinkGBs: 450, Source: "NVIDIA H100 Tensor Core GPU datasheet (SXM5): 989 TFLOPS BF16, 1,979 FP8 dense; 3.35 TB/s HBM3; 80 GB; NVLink 900 GB/s"},
	"h200":   {Name: "h200", BF16TFLOPS: 989, FP8TFLOPS: 1979, HBMTBs: 4.8, MemoryGB: 141, LinkGBs: 450, Source: "NVIDIA H200 Tensor Core GPU datasheet (SXM): 989 TFLOPS BF16, 1,979 FP8 dense; 4.8 TB/s HBM3e; 141 GB; NVLink 900 GB/s"},
	"b200":   {Name: "b200", BF16TFLOPS: 2250, FP8TFLOPS: 4500, HBMTBs: 8, MemoryGB: 180, LinkGBs: 900, Source: "NVIDIA HGX B200 datasheet, per GPU: 2.25 PFLOPS BF16, 4.5 FP8 dense; 8 TB/s HBM3e; 180 GB; NVLink 1.8 TB/s"},
	"a100":   {Name: "a100", BF16TFLOPS: 312, FP8TFLOPS: 0, HBMTBs: 2.039, MemoryGB: 80, LinkGBs: 300, Source: "NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): 312 TFLOPS BF16 dense, no FP8; 2,039 GB/s HBM2e; NVLink 600 GB/s"},
	"l40s":   {Name: "l40s", BF16TFLOPS: 362, FP8TFLOPS: 733, HBMTBs: 0.864, MemoryGB: 48, LinkGBs: 32, Source: "NVIDIA L40S datasheet: 362 TFLOPS BF16, 733 FP8 dense (half the sparse figures); 864 GB/s GDDR6; 48 GB; PCIe Gen4 x16 (64 GB/s both ways)"},
	"mi300x": {Name: "mi300x", BF16TFLOPS: 1307, FP8TFLOPS: 2615, HBMTBs: 5.3, MemoryGB: 192, LinkGBs: 64, Source: "AMD Instinct MI300X datasheet: 1,307.4 TFLOPS BF16, 2,614.9 FP8 dense; 5.3 TB/s HBM3; 192 GB; Infinity Fabric 64 GB/s per link"},
}

// The models' architectures, from their config.json on Hugging Face.
var models = map[string]Arch{
	"llama3.1-8b":       {Name: "llama3.1-8b", HFName: "meta-llama/Llama-3.1-8B-Instruct", Layers: 32, Hidden: 4096, Heads: 32, KVHeads: 8, HeadDim: 128, Intermediate: 14336, Vocab: 128256, MaxPosition: 131072},
	"llama3.1-70b":      {Name: "llama3.1-70b", HFName: "meta-llama/Llama-3.1-70B-Instruct", Layers: 80, Hidden: 8192, Heads: 64, KVHeads: 8, HeadDim: 128, Intermediate: 28672, Vocab: 128256, MaxPosition: 131072},
	"llama3.1-405b":     {Name: "llama3.1-405b", HFName: "meta-llama/Llama-3.1-405B-Instruct", Layers: 126, Hidden: 16384, Heads: 128, KVHeads: 8, HeadDim: 128, Intermediate: 53248, Vocab: 128256, MaxPosition: 131072},
	"llama3.3-70b":      {Name: "llama3.3-70b", HFName: "meta-llama/Llama-3.3-70B-Instruct", Layers: 80, Hidden: 8192, Heads: 64, KVHeads: 8, HeadDim: 128, Intermediate: 28672, Vocab: 128256, MaxPosition: 131072},
	"qwen3-8b":          {Name: "qwen3-8b", HFName: "Qwen/Qwen3-8B", Layers: 36, Hidden: 4096, Heads: 32, KVHeads: 8, HeadDim: 128, Intermediate: 12288, Vocab: 151936, MaxPosition: 40960},
	"qwen3-32b":         {Name: "qwen3-32b", HFName: "Qwen/Qwen3-32B", Layers: 64, Hidden: 5120, Heads: 64, KVHeads: 8, HeadDim: 128, Intermediate: 25600, Vocab: 151936, MaxPosition: 40960},
	"qwen3-30b-a3b":     {Name: "qwen3-30b-a3b", HFName: "Qwen/Qwen3-30B-A3B", Layers: 48, Hidden: 2048, Heads: 32, KVHeads: 4, HeadDim: 128, Intermediate: 6144, Vocab: 151936, MaxPosition: 40960, Experts: 128, ExpertsPerToken: 8, ExpertIntermediate: 768},
	"qwen3-235b-a22b":   {Name: "qwen3-235b-a22b", HFName: "Qwen/Qwen3-235B-A22B", Layers: 94, Hidden: 4096, Heads: 64, KVHeads: 4, HeadDim: 128, Intermediate: 12288, Vocab: 151936, MaxPosition: 40960, Experts: 128, ExpertsPerToken: 8, ExpertIntermediate: 1536},
	"gpt-oss-20b":       {Name: "gpt-oss-20b", HFName: "openai/gpt-oss-20b", Layers: 24, Hidden: 2880, Heads: 64, KVHeads: 8, HeadDim: 64, Intermediate: 2880, Vocab: 201088, MaxPosition: 131072, Experts: 32, ExpertsPerToken: 4, NativeDtype: "mxfp4"},
	"gpt-oss-120b":      {Name: "gpt-oss-120b", HFName: "openai/gpt-oss-120b", Layers: 36, Hidden: 2880, Heads: 64, KVHeads: 8, HeadDim: 64, Intermediate: 2880, Vocab: 201088, MaxPosition: 131072, Experts: 128, ExpertsPerToken: 4, NativeDtype: "mxfp4"},
	"mistral-small-24b": {Name: "mistral-small-24b", HFName: "mistralai/Mistral-Small-24B-Instruct-2501", Layers: 40, Hidden: 5120, Heads: 32, KVHeads: 8, HeadDim: 128, Intermediate: 32768, Vocab: 131072, MaxPosition: 32768},
}

// GPUs and Models list the shipped tables' keys.
func GPUs() []string   { return slices.Sorted(maps.Keys(gpus)) }
func Models() []string { return slices.Sorted(maps.Keys(models)) }

// bytesPer is a dtype's bytes per parameter or KV element.
func bytesPer(dtype string) (float64, error) {
	switch dtype {
	case "bf16", "fp16":
		return 2, nil
	case "fp8":
		return 1, nil
	case "mxfp4":
		return 4.25 / 8, nil // 4-bit values and an 8-bit scale per 32
	}
	return 0, fmt.Errorf("dtype %q: want bf16, fp8 or mxfp4", dtype)
}

// Efficiency factors: the share of a datasheet peak a serving engine
// reaches. They are set so that the derived Llama-3.1-8B profile on one
// H100 matches the built-in one (from Vidur's measured operator profiles
// and BLIS's fitted overheads) within a few percent; a calibration
// (wfsched calibrate, when a server is at hand) replaces them.
const (
	effCompute  = 0.65   // matmul FLOPs: 16.2 us/token at peak, 25 us measured for 8B on H100
	effWeights  = 0.75   // weight reads per decode step: 4.8 ms at peak, 6.5 ms measured
	effKV       = 0.5    // paged-attention KV reads (gathers of 16-token blocks)
	tFixedUS    = 1100.0 // per-step overhead (scheduling, sampling, launch), BLIS's fit
	cReqUS      = 4.4    // per sequence in a step, BLIS's fit
	allReduceUS = 8.0    // one small all-reduce's latency over NVLink (two per layer with TP)
	memReserve  = 0.05   // of memory: activations and CUDA graphs, beside weights and KV
)

// Hardware describes a deployment to derive a profile for.
type Hardware struct {
	Model   Arch    `json:"model"`
	GPU     GPU     `json:"gpu"`
	TP      int     `json:"tp"`
	Dtype   string  `json:"dtype"`    // weights: bf16, fp8 or mxfp4
	KVType  string  `json:"kv_dtype"` // KV cache: bf16 or fp8
	MemUtil float64 `json:"gpu_memory_utilization"`
}

// derived are the physical quantities behind a derived profile, per GPU:
// the weights' bytes (all experts' among them), the share of experts a
// token is routed to, the KV bytes per context token, the FLOPs per token,
// the peak FLOPS and the memory bandwidth.
type derived struct {
	weightBytes, expertBytes, expertShare float64
	kvBytesPerToken, flopsPerToken        float64
	peakFLOPS, bw                         float64
}

// prefillFloor is the least time, in seconds, tokens tokens' FLOPs take.
func (d derived) prefillFloor(tokens int) float64 {
	return d.flopsPerToken * float64(tokens) / d.peakFLOPS
}

// decodeBytes is what a step of seqs decoding sequences reading ctx
// context tokens must read: the dense weights, the experts its tokens
// touch and the KV.
func (d derived) decodeBytes(seqs, ctx int) float64 {
	return d.weightBytes - d.expertBytes + d.expertBytes*Touched(seqs, d.expertShare) + d.kvBytesPerToken*float64(ctx)
}

func (h Hardware) physics() (derived, error) {
	var d derived
	if err := h.Model.validate(); err != nil {
		return d, err
	}
	if h.TP < 1 {
		return d, fmt.Errorf("tp %d: must be at least 1", h.TP)
	}
	// vLLM splits attention heads evenly across ranks; key-value heads too,
	// or replicates them when there are fewer than ranks.
	if kv := h.Model.KVHeads; h.Model.Heads%h.TP != 0 || kv%h.TP != 0 && h.TP%kv != 0 {
		return d, fmt.Errorf("tp %d does not divide %s's %d attention heads (%d key-value heads)", h.TP, h.Model.Name, h.Model.Heads, kv)
	}
	if h.GPU.BF16TFLOPS <= 0 || h.GPU.HBMTBs <= 0 || h.GPU.MemoryGB <= 0 {
		return d, fmt.Errorf("gpu %s: bf16_tflops, hbm_tb_s and memory_gb must be positive", h.GPU.Name)
	}
	wb, err := bytesPer(h.Dtype)
	if err != nil {
		return d, err
	}
	kb, err := bytesPer(h.KVType)
	if err != nil || h.KVType == "mxfp4" {
		return d, fmt.Errorf("kv_dtype %q: want bf16 or fp8", h.KVType)
	}
	dense, experts, embed := h.Model.Params()
	// gpt-oss's published experts are MXFP4, the rest BF16; other weights
	// take the weight dtype.
	eb := wb // the experts' bytes per parameter
	if h.Model.NativeDtype == "mxfp4" && h.Dtype == "mxfp4" {
		wb = 2
	}
	t := float64(h.TP)
	d.expertBytes = experts * eb / t
	d.weightBytes = (dense+embed)*wb/t + d.expertBytes
	if h.Model.Experts > 0 {
		d.expertShare = float64(h.Model.ExpertsPerToken) / float64(h.Model.Experts)
	}
	// KV heads are split across the TP ranks, and replicated when fewer.
	kvHeads := math.Max(1, float64(h.Model.KVHeads)/t)
	d.kvBytesPerToken = 2 * float64(h.Model.Layers) * kvHeads * float64(h.Model.headDim()) * kb
	d.flopsPerToken = 2 * h.Model.ActiveParams() / t
	d.peakFLOPS = h.GPU.BF16TFLOPS * 1e12
	if h.Dtype == "fp8" && h.GPU.FP8TFLOPS > 0 {
		d.peakFLOPS = h.GPU.FP8TFLOPS * 1e12
	}
	d.bw = h.GPU.HBMTBs * 1e12
	return d, nil
}

// Derive computes a profile for h.
func Derive(h Hardware) (Profile, error) {
	d, err := h.physics()
	if err != nil {
		return Profile{}, err
	}
	a := h.Model
	us := 1e6
	p := Profile{Model: a.HFName, BlockSize: 16, MaxNumSeqs: 256, MaxNumBatchedTokens: 8192, Hardware: &h}
	if p.Model == "" {
		p.Model = a.Name
	}
	p.CTok = Micros(d.flopsPerToken / (d.peakFLOPS * effCompute) * us)
	p.CKV = Micros(d.kvBytesPerToken / (d.bw * effKV) * us)
	p.TFixed, p.CReq = tFixedUS, cReqUS
	// Weight reads: the dense part every step; the experts by the share a
	// step's tokens touch (StepTime).
	p.TWeights = Micros((d.weightBytes - d.expertBytes) / (d.bw * effWeights) * us)
	if d.expertBytes > 0 {
		p.TExperts = Micros(d.expertBytes / (d.bw * effWeights) * us)
		p.ExpertShare = d.expertShare
	}
	if h.TP > 1 {
		// Two all-reduces of the hidden state per layer: their latency per
		// step, and a ring's 2(t-1)/t of the activations per token.
		t := float64(h.TP)
		p.TFixed += Micros(2 * float64(a.Layers) * allReduceUS)
		if h.GPU.LinkGBs > 0 {
			p.CComm = Micros(2 * float64(a.Layers) * 2 * (t - 1) / t * float64(a.Hidden) * 2 / (h.GPU.LinkGBs * 1e9) * us)
		}
	}
	free := h.GPU.MemoryGB*1e9*(h.MemUtil-memReserve) - d.weightBytes
	if free <= 0 {
		return Profile{}, fmt.Errorf("%s does not fit: %.1f GB of weights per GPU, %.1f GB usable at gpu_memory_utilization %.2f: raise tp or use fp8",
			h.name(), d.weightBytes/1e9, h.GPU.MemoryGB*(h.MemUtil-memReserve), h.MemUtil)
	}
	p.NumBlocks = int(free / d.kvBytesPerToken / float64(p.BlockSize))
	if p.NumBlocks < 1 {
		return Profile{}, fmt.Errorf("%s: no room for one KV block", h.name())
	}
	p.MaxModelLen = min(a.MaxPosition, p.NumBlocks*p.BlockSize)
	if p.MaxModelLen <= 0 {
		p.MaxModelLen = p.NumBlocks * p.BlockSize
	}
	p.Name = h.name()
	p.Source = fmt.Sprintf("derived: %s (%.1fB parameters, %.1fB active) on %d x %s, weights %s, KV %s; %s; efficiencies compute %.2f, weights %.2f, KV %.2f",
		a.Name, totalParams(a)/1e9, a.ActiveParams()/1e9, h.TP, h.GPU.Name, h.Dtype, h.KVType, h.GPU.Source, effCompute, effWeights, effKV)
	return p, nil
}

func totalParams(a Arch) float64 {
	dense, experts, embed := a.Params()
	return dense + experts + embed
}

func (h Hardware) name() string {
	return fmt.Sprintf("%s-%s-tp%d-%s", h.GPU.Name, h.Model.Name, h.TP, h.Dtype)
}

// derivedName reads GPU-MODEL[-tpN][-DTYPE] (h200-llama3.1-70b-tp4-fp8).
var derivedName = regexp.MustCompile(`^([a-z0-9]+)-(.+?)(?:-tp(\d+))?(?:-(bf16|fp8|mxfp4))?$`)

// HardwareByName parses a derived profile's name against the tables.
func HardwareByName(name string) (Hardware, bool, error) {
	m := derivedName.FindStringSubmatch(name)
	if m == nil {
		return Hardware{}, false, nil
	}
	g, okG := gpus[m[1]]
	a, okM := models[m[2]]
	if !okG || !okM {
		return Hardware{}, false, nil
	}
	h := Hardware{Model: a, GPU: g, TP: 1, Dtype: "bf16", KVType: "bf16", MemUtil: 0.9}
	if a.NativeDtype != "" {
		h.Dtype = a.NativeDtype
	}
	if m[3] != "" {
		h.TP, _ = strconv.Atoi(m[3])
	}
	if m[4] != "" {
		h.Dtype = m[4]
	}
	if h.Dtype == "fp8" {
		h.KVType = "fp8"
	}
	return h, true, nil
}

// hardwareFile is a profile description file: a GPU (a name from the
// table, or its figures), a model (a name from the table, a config.json's
// path, or its fields), and the deployment.
type hardwareFile struct {
	GPU     json.RawMessage `json:"gpu"`
	Model   json.RawMessage `json:"model"`
	TP      int             `json:"tp"`
	Dtype   string          `json:"dtype"`
	KVType  string          `json:"kv_dtype"`
	MemUtil float64         `json:"gpu_memory_utilization"`
}

// readHardware reads a description file (JSON with "gpu" and "model").
func readHardware(data []byte, dir string) (Hardware, error) {
	var f hardwareFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Hardware{}, err
	}
	h := Hardware{TP: max(f.TP, 1), Dtype: f.Dtype, KVType: f.KVType, MemUtil: f.MemUtil}
	var name string
	if json.Unmarshal(f.GPU, &name) == nil {
		g, ok := gpus[name]
		if !ok {
			return h, fmt.Errorf("gpu %q: not in the table (%s); give its figures as an object", name, strings.Join(GPUs(), ", "))
		}
		h.GPU = g
	} else if err := json.Unmarshal(f.GPU, &h.GPU); err != nil {
		return h, fmt.Errorf("gpu: %v", err)
	}
	if json.Unmarshal(f.Model, &name) == nil {
		if a, ok := models[name]; ok {
			h.Model = a
		} else {
			path := name
			if !strings.HasPrefix(path, "/") {
				path = dir + "/" + path
			}
			cfg, err := os.ReadFile(path)
			if err != nil {
				return h, fmt.Errorf("model %q: neither in the table (%s) nor a config.json: %v", name, strings.Join(Models(), ", "), err)
			}
			if err := json.Unmarshal(cfg, &h.Model); err != nil {
				return h, fmt.Errorf("model %s: %v", name, err)
			}
			h.Model.Name = strings.TrimSuffix(name, ".json")
		}
	} else if err := json.Unmarshal(f.Model, &h.Model); err != nil {
		return h, fmt.Errorf("model: %v", err)
	}
	if h.Model.Name == "" {
		h.Model.Name = "model"
	}
	if h.Dtype == "" {
		h.Dtype = "bf16"
		if h.Model.NativeDtype != "" {
			h.Dtype = h.Model.NativeDtype
		}
	}
	if h.KVType == "" {
		h.KVType = "bf16"
	}
	if h.MemUtil == 0 {
		h.MemUtil = 0.9
	}
	if h.MemUtil <= memReserve || h.MemUtil > 1 {
		return h, fmt.Errorf("gpu_memory_utilization %v: want more than %v, at most 1", h.MemUtil, memReserve)
	}
	return h, nil
}

// CheckPhysics checks that p, running h, is never faster than the
// hardware allows: a prefill step no faster than its FLOPs at the GPU's
// peak, a decode step no faster than reading the weights and the KV it
// touches at peak bandwidth, and a KV cache that fits beside the weights.
func CheckPhysics(p Profile, h Hardware) error {
	d, err := h.physics()
	if err != nil {
		return err
	}
	for _, tokens := range []int{512, 2048, 8192} {
		floor := d.prefillFloor(tokens)
		if got := p.StepTime(tokens, tokens, 1).Seconds(); got < floor {
			return fmt.Errorf("a %d-token prefill step takes %.3g s, under the %.3g s its FLOPs take at the GPU's peak: c_tok_us %.3g is below %.3g",
				tokens, got, floor, float64(p.CTok), floor/float64(tokens)*1e6)
		}
	}
	for _, b := range []int{1, 32, 256} {
		ctx := b * 2048
		weights := d.decodeBytes(b, 0) // the dense weights and the experts b tokens touch
		floor := d.decodeBytes(b, ctx) / d.bw
		if got := p.StepTime(b, ctx, b).Seconds(); got < floor {
			return fmt.Errorf("a decode step of %d sequences (%d context tokens) takes %.3g s, under the %.3g s it takes to read %.3g GB of weights and %.3g GB of KV at peak bandwidth: raise t_weights_us (%.4g) or c_kv_us (%.3g)",
				b, ctx, got, floor, weights/1e9, d.kvBytesPerToken*float64(ctx)/1e9, float64(p.TWeights), float64(p.CKV))
		}
	}
	kv := float64(p.NumBlocks*p.BlockSize) * d.kvBytesPerToken
	if free := h.GPU.MemoryGB*1e9*h.MemUtil - d.weightBytes; kv > free {
		return fmt.Errorf("%d KV blocks of %d tokens need %.1f GB per GPU; %.1f GB are left beside %.1f GB of weights at gpu_memory_utilization %.2f",
			p.NumBlocks, p.BlockSize, kv/1e9, free/1e9, d.weightBytes/1e9, h.MemUtil)
	}
	return nil
}

// Touched is the expected share of experts that tokens tokens, each
// routed to share of them independently, touch.
func Touched(tokens int, share float64) float64 {
	if share <= 0 {
		return 0
	}
	return 1 - math.Pow(1-share, float64(tokens))
}
