package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// chromium finds a headless-capable browser, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium installed (Debian: apt-get install chromium)")
	return ""
}

// browserCheck loads a page in headless Chromium through the DevTools
// protocol (over a pipe) and returns the errors the page produced (console
// errors, uncaught exceptions, failed loads) and a screenshot.
func browserCheck(t *testing.T, bin, page string) (problems []string, shot image.Image) {
	t.Helper()
	abs, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	toChrome, ourEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromChrome, theirEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe",
		"--user-data-dir="+t.TempDir(), "--window-size=1200,900", "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, theirEnd} // fd 3: what it reads, fd 4: what it writes
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	theirEnd.Close()
	defer func() {
		ourEnd.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()

	type message struct {
		ID     int             `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	msgs := make(chan message, 256)
	go func() {
		defer close(msgs)
		r := bufio.NewReader(fromChrome)
		for {
			b, err := r.ReadBytes(0)
			if err != nil {
				return
			}
			var m message
			if json.Unmarshal(b[:len(b)-1], &m) == nil {
				msgs <- m
			}
		}
	}()
	deadline := time.After(30 * time.Second)
	id := 0
	var events []message
	call := func(session, method string, params any) json.RawMessage {
		id++
		req := map[string]any{"id": id, "method": method, "params": params}
		if session != "" {
			req["sessionId"] = session
		}
		b, _ := json.Marshal(req)
		if _, err := ourEnd.Write(append(b, 0)); err != nil {
			t.Fatalf("DevTools %s: %v", method, err)
		}
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("Chromium closed the DevTools pipe during %s", method)
				}
				if m.ID == id {
					if len(m.Error) > 0 {
						t.Fatalf("DevTools %s: %s", method, m.Error)
					}
					return m.Result
				}
				if m.Method != "" {
					events = append(events, m)
				}
			case <-deadline:
				t.Fatalf("DevTools %s: no answer in 30 s", method)
			}
		}
	}
	var target struct{ TargetID string }
	json.Unmarshal(call("", "Target.createTarget", map[string]any{"url": "about:blank"}), &target)
	var attached struct{ SessionID string }
	json.Unmarshal(call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}), &attached)
	s := attached.SessionID
	for _, domain := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		call(s, domain, map[string]any{})
	}
	call(s, "Page.navigate", map[string]any{"url": "file://" + abs})
	loaded := false
	check := func(m message) {
		switch m.Method {
		case "Page.loadEventFired":
			loaded = true
		case "Runtime.consoleAPICalled":
			var p struct {
				Type string
				Args []struct{ Value any }
			}
			json.Unmarshal(m.Params, &p)
			if p.Type == "error" || p.Type == "assert" {
				problems = append(problems, fmt.Sprintf("console.%s %v", p.Type, p.Args))
			}
		case "Runtime.exceptionThrown":
			problems = append(problems, "uncaught exception: "+string(m.Params))
		case "Log.entryAdded":
			var p struct {
				Entry struct{ Level, Text, URL string }
			}
			json.Unmarshal(m.Params, &p)
			if p.Entry.Level == "error" {
				problems = append(problems, fmt.Sprintf("%s (%s)", p.Entry.Text, p.Entry.URL))
			}
		}
	}
	for _, m := range events {
		check(m)
	}
	for !loaded {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("Chromium closed the DevTools pipe before the page loaded")
			}
			check(m)
		case <-deadline:
			t.Fatal("the page did not load in 30 s")
		}
	}
	time.Sleep(200 * time.Millisecond) // late errors (failed subresources) arrive just after load
	for drained := false; !drained; {
		select {
		case m := <-msgs:
			check(m)
		default:
			drained = true
		}
	}
	var capture struct{ Data string }
	json.Unmarshal(call(s, "Page.captureScreenshot", map[string]any{"format": "png"}), &capture)
	b, err := base64.StdEncoding.DecodeString(capture.Data)
	if err != nil {
		t.Fatal(err)
	}
	shot, err = png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	call("", "Browser.close", map[string]any{})
	return problems, shot
}

// inked is the share of a screenshot's pixels that are not the background.
func inked(img image.Image) float64 {
	bg := img.At(0, 0)
	r0, g0, b0, _ := bg.RGBA()
	n, total := 0, 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 2 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			if r != r0 || g != g0 || b != b0 {
				n++
			}
			total++
		}
	}
	return float64(n) / float64(total)
}

// checkPage fails unless page loads in a real browser with no error and
// shows something.
func checkPage(t *testing.T, page string) {
	t.Helper()
	bin := chromium(t)
	problems, shot := browserCheck(t, bin, page)
	if len(problems) > 0 {
		t.Errorf("%s: %d errors in the browser: %v", page, len(problems), problems)
	}
	if f := inked(shot); f < 0.02 {
		t.Errorf("%s: the screenshot is blank (%.2f%% of it drawn)", page, 100*f)
	}
}

// TestBrowserCheck: the browser check itself sees a console error, a
// failed load and a blank page.
func TestBrowserCheck(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<!DOCTYPE html><html><body><h1>Title</h1><img src="missing.png"><script>console.error("boom")</script></body></html>`), 0o644)
	problems, _ := browserCheck(t, bin, bad)
	if len(problems) < 2 {
		t.Errorf("a console error and a missing image: %v", problems)
	}
	blank := filepath.Join(dir, "blank.html")
	os.WriteFile(blank, []byte(`<!DOCTYPE html><html><body></body></html>`), 0o644)
	problems, shot := browserCheck(t, bin, blank)
	if len(problems) != 0 || inked(shot) > 0.001 {
		t.Errorf("a blank page: problems %v, %.3f inked", problems, inked(shot))
	}
}
