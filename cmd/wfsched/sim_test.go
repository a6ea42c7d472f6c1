package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/internal/testenv"
)

func TestSimServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"sim", "--listen", "127.0.0.1:0", "--instances", "2", "--time-scale", "0.01"}, &out, &errOut)
	}()
	urlRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+/v1`)
	deadline := time.Now().Add(10 * time.Second)
	var urls []string
	for len(urls) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no URLs printed: %q %q", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
		urls = urlRE.FindAllString(out.String(), -1)
	}
	for _, u := range urls {
		resp, err := http.Post(u+"/chat/completions", "application/json",
			strings.NewReader(`{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "ignore_eos": true}`))
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if json.Unmarshal(b, &r); resp.StatusCode != 200 || r.Usage.CompletionTokens != 3 {
			t.Errorf("%s: %d %s", u, resp.StatusCode, b)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(out.String(), "stopping") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop after cancel")
	}
}

func TestSimPrintProfileAndErrors(t *testing.T) {
	code, out, _ := run(t, "sim", "--print-profile", "--profile", "a100-llama3.1-8b")
	if code != 0 || !strings.Contains(out, `"c_tok_us": 70`) {
		t.Errorf("exit %d: %s", code, out)
	}
	for _, args := range [][]string{
		{"sim", "--profile", "tpu-v9"},
		{"sim", "--time-scale", "0"},
		{"sim", "--fault-error-status", "418"},
		{"sim", "--fault-error-rate", "2"},
		{"sim", "--instances", "0"},
	} {
		if code, _, errOut := run(t, args...); code != 2 || !strings.Contains(errOut, "wfsched: error:") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}
