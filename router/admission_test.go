package router

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAdmission: with one place per backend, requests beyond it wait at
// the router and go on by their priority field, lower first; the backend
// never sees two at once.
func TestAdmission(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var order []int
	inFlight, most := 0, 0
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			return // health checks
		}
		var body struct {
			Priority int `json:"priority"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		order = append(order, body.Priority)
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"message":{"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}))
	defer backend.Close()
	rt, url := startRouter(t, Config{Backends: []string{backend.URL}, Logic: "least-loaded", Admission: 1, HealthInterval: time.Hour})
	send := func(prio int, done *sync.WaitGroup) {
		defer done.Done()
		body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"hi"}],"priority":%d}`, prio)
		resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	wg.Add(4)
	go send(9, &wg) // admitted at once
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 1 })
	for _, p := range []int{5, 1, 3} {
		go send(p, &wg)
		waitFor(t, func() bool { return rt.Held() >= 1 })
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, func() bool { return rt.Held() == 3 })
	if st := rt.StatsNow(); st.AdmissionWaiting != 3 {
		t.Errorf("stats say %d waiting", st.AdmissionWaiting)
	}
	for range 4 {
		release <- struct{}{}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if want := []int{9, 1, 3, 5}; fmt.Sprint(order) != fmt.Sprint(want) || most != 1 {
		t.Errorf("backend saw priorities %v (want %v), %d at once", order, want, most)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
