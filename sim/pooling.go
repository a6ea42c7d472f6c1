package sim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/wfsched/wfsched/tokenizer"
)

// /tokenize, /detokenize and /v1/embeddings, as vLLM serves them, with the
// engine's tokenizer and template.

// tokenize serves POST /tokenize: a prompt, or chat messages rendered with
// the template.
func (s *Server) tokenize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Prompt              *string         `json:"prompt"`
		Messages            json.RawMessage `json:"messages"`
		AddGenerationPrompt *bool           `json:"add_generation_prompt"`
		ContinueFinalMsg    bool            `json:"continue_final_message"`
		AddSpecialTokens    *bool           `json:"add_special_tokens"`
		ReturnTokenStrs     bool            `json:"return_token_strs"`
	}
	if !s.readRequest(w, r, &req) {
		return
	}
	enc := s.e.Encoder()
	var ids []int
	switch {
	case req.Prompt != nil:
		if req.AddSpecialTokens == nil || *req.AddSpecialTokens {
			ids = []int{tokenizer.BeginOfText}
		}
		ids = enc.Encode(ids, *req.Prompt)
	case len(req.Messages) > 0:
		msgs, apiErr := chatMessages(req.Messages)
		if apiErr != nil {
			s.writeError(w, apiErr)
			return
		}
		if req.ContinueFinalMsg {
			ids = enc.ChatOpen(nil, msgs)
		} else {
			ids = enc.Chat(nil, msgs, req.AddGenerationPrompt == nil || *req.AddGenerationPrompt)
		}
	default:
		s.writeError(w, badRequest("prompt", "give prompt or messages"))
		return
	}
	out := map[string]any{"count": len(ids), "max_model_len": s.e.prof.MaxModelLen, "tokens": ids, "token_strs": nil}
	if req.ReturnTokenStrs {
		strs := make([]string, len(ids))
		for i, id := range ids {
			strs[i] = enc.TokenText(id)
		}
		out["token_strs"] = strs
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, out)
}

// detokenize serves POST /detokenize.
func (s *Server) detokenize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tokens []int `json:"tokens"`
	}
	if !s.readRequest(w, r, &req) {
		return
	}
	for _, id := range req.Tokens {
		if id < 0 || id > tokenizer.MaxID {
			s.writeError(w, badRequest("tokens", "token id %d is out of vocabulary (0 to %d)", id, tokenizer.MaxID))
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, map[string]any{"prompt": s.e.Encoder().Decode(req.Tokens)})
}

// readRequest reads a JSON request body into v and checks the model it
// names; a failure is answered (false).
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request, v any) bool {
	body, apiErr := s.readBody(w, r)
	if apiErr == nil {
		var m struct {
			Model string `json:"model"`
		}
		if err := json.Unmarshal(body, v); err != nil {
			apiErr = badRequest("", "malformed JSON body: %v", err)
		} else {
			json.Unmarshal(body, &m)
			apiErr = s.checkModel(m.Model)
		}
	}
	if apiErr != nil {
		s.writeError(w, apiErr)
		return false
	}
	return true
}

func (s *Server) checkModel(model string) *apiError {
	if model != "" && model != s.e.Model() {
		return &apiError{status: http.StatusNotFound, typ: "NotFoundError", param: "model", msg: fmt.Sprintf("The model `%s` does not exist.", model)}
	}
	return nil
}

// EmbeddingDims is the length of the engine's embedding vectors (a
// request's dimensions may ask for fewer).
const EmbeddingDims = 1024

// maxEmbeddingInputs bounds the inputs of one embeddings request.
const maxEmbeddingInputs = 2048

// embeddings serves POST /v1/embeddings. Each input is a pooling request
// to the engine (its prompt computed, with the prefix cache, no output
// token), so embeddings take modeled time and load the engine as vLLM's
// would; the vectors are deterministic: each token id adds a fixed
// pseudo-random direction, normalized, so texts that share tokens point
// alike.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	arrival := s.e.clock.Now()
	if _, ok := s.fault(w, r); !ok {
		return
	}
	var req struct {
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
		Dimensions     *int            `json:"dimensions"`
		Truncate       *int            `json:"truncate_prompt_tokens"`
		Priority       int             `json:"priority"`
	}
	if !s.readRequest(w, r, &req) {
		return
	}
	dims := EmbeddingDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > EmbeddingDims {
			s.writeError(w, badRequest("dimensions", "dimensions %d: want 1 to %d", *req.Dimensions, EmbeddingDims))
			return
		}
		dims = *req.Dimensions
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		s.writeError(w, badRequest("encoding_format", "encoding_format %q: want float or base64", req.EncodingFormat))
		return
	}
	inputs, apiErr := s.embeddingInputs(req.Input)
	if apiErr != nil {
		s.writeError(w, apiErr)
		return
	}
	streams := make([]*Stream, len(inputs))
	for i, ids := range inputs {
		if req.Truncate != nil && *req.Truncate > 0 && len(ids) > *req.Truncate {
			ids = ids[len(ids)-*req.Truncate:]
			inputs[i] = ids
		}
		if len(ids)+1 > s.e.prof.MaxModelLen {
			s.writeError(w, badRequest("input", "input[%d] has %d tokens; this model's maximum context length is %d tokens", i, len(ids), s.e.prof.MaxModelLen))
			return
		}
		st, err := s.e.Submit(Request{Prompt: ids, MaxTokens: 1, Pool: true, Priority: req.Priority, Arrival: arrival})
		if err != nil {
			for _, prev := range streams[:i] {
				prev.Abort()
			}
			s.writeError(w, badRequest("input", "%v", err))
			return
		}
		streams[i] = st
	}
	data := make([]any, len(inputs))
	prompt := 0
	for i, st := range streams {
		for {
			_, done, _ := st.Snapshot(0)
			if done {
				break
			}
			if !s.wait(r, st) {
				for _, other := range streams {
					other.Abort()
				}
				return
			}
		}
		p, _, _ := st.Usage()
		prompt += p
		vec := embed(inputs[i], dims)
		item := map[string]any{"object": "embedding", "index": i, "embedding": vec}
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for k, x := range vec {
				binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(x))
			}
			item["embedding"] = base64.StdEncoding.EncodeToString(buf)
		}
		data[i] = item
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, map[string]any{"id": newID("embd-"), "object": "list", "created": time.Now().Unix(), "model": s.e.Model(), "data": data,
		"usage": map[string]any{"prompt_tokens": prompt, "total_tokens": prompt, "completion_tokens": 0, "prompt_tokens_details": nil}})
}

// embeddingInputs reads input: a string, a list of strings, a list of
// token ids, or a list of such lists.
func (s *Server) embeddingInputs(raw json.RawMessage) ([][]int, *apiError) {
	enc := s.e.Encoder()
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return [][]int{enc.Encode([]int{tokenizer.BeginOfText}, one)}, nil
	}
	var strs []string
	var ids []int
	var idLists [][]int
	var out [][]int
	switch {
	case json.Unmarshal(raw, &strs) == nil:
		for _, t := range strs {
			out = append(out, enc.Encode([]int{tokenizer.BeginOfText}, t))
		}
	case json.Unmarshal(raw, &ids) == nil:
		out = [][]int{ids}
	case json.Unmarshal(raw, &idLists) == nil:
		out = idLists
	default:
		return nil, badRequest("input", "input: want a string, a list of strings, a list of token ids or a list of such lists")
	}
	if len(out) == 0 || len(out) > maxEmbeddingInputs {
		return nil, badRequest("input", "input: want 1 to %d inputs, got %d", maxEmbeddingInputs, len(out))
	}
	for i, in := range out {
		if len(in) == 0 {
			return nil, badRequest("input", "input[%d] is empty", i)
		}
		for _, id := range in {
			if id < 0 || id > tokenizer.MaxID {
				return nil, badRequest("input", "input[%d]: token id %d is out of vocabulary", i, id)
			}
		}
	}
	return out, nil
}

// embed returns the unit vector of ids: the sum of a fixed pseudo-random
// direction per token id.
func embed(ids []int, dims int) []float32 {
	counts := map[int]float64{}
	for _, id := range ids {
		counts[id]++
	}
	sum := make([]float64, dims)
	for id, n := range counts {
		rng := rand.New(rand.NewPCG(uint64(id), 0x656d62)) // "emb"
		for k := range sum {
			sum[k] += n * rng.NormFloat64()
		}
	}
	norm := 0.0
	for _, x := range sum {
		norm += x * x
	}
	norm = math.Sqrt(norm)
	out := make([]float32, dims)
	for k, x := range sum {
		if norm > 0 {
			out[k] = float32(x / norm)
		}
	}
	return out
}
