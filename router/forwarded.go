package router

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// How the router fills the X-Forwarded-* fields of the requests it
// forwards (Config.Forwarded, --forwarded).
const (
	// ForwardedAppend, the default, appends the client's address to
	// X-Forwarded-For (as httputil.ReverseProxy does: the last entry is
	// the one the router saw; earlier ones are the client's word) and sets
	// X-Forwarded-Host and X-Forwarded-Proto to what the router received,
	// replacing any the client sent.
	ForwardedAppend = "append"
	// ForwardedReplace sets X-Forwarded-For to the client's address
	// alone: a backend reading its first entry sees no value a client
	// chose. For a router that faces clients directly.
	ForwardedReplace = "replace"
	// ForwardedTrust is for a router behind a proxy it trusts (an
	// ingress that terminates TLS): X-Forwarded-For is appended to, and
	// X-Forwarded-Host and X-Forwarded-Proto are kept as that proxy set
	// them (set only when absent).
	ForwardedTrust = "trust"
)

// checkForwarded validates a Config.Forwarded value ("" is the default).
func checkForwarded(mode string) error {
	switch mode {
	case "", ForwardedAppend, ForwardedReplace, ForwardedTrust:
		return nil
	}
	return fmt.Errorf("forwarded %q: want %s, %s or %s", mode, ForwardedAppend, ForwardedReplace, ForwardedTrust)
}

// setForwarded sets r's X-Forwarded-For, -Host and -Proto for its
// backend as the configured mode says. Called once per request, before
// its first attempt.
func (rt *Router) setForwarded(r *http.Request) {
	h := r.Header
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		prior := h["X-Forwarded-For"]
		if len(prior) > 0 && rt.cfg.Forwarded != ForwardedReplace {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h["X-Forwarded-For"] = []string{ip}
	}
	trust := rt.cfg.Forwarded == ForwardedTrust
	if _, ok := h["X-Forwarded-Host"]; (!ok || !trust) && r.Host != "" {
		h["X-Forwarded-Host"] = []string{r.Host}
	} else if !trust {
		delete(h, "X-Forwarded-Host") // none received: none the client chose
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok || !trust {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		h["X-Forwarded-Proto"] = []string{proto}
	}
}
