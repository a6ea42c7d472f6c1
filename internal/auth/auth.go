// Package auth checks the bearer tokens that wfsched's servers (the router
// and the embedded engine) may require, in one place for both.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Bearer reports whether r carries "Authorization: Bearer key". The
// comparison takes the same time whatever the token, so it leaks nothing of
// the key. An empty key lets every request through.
func Bearer(r *http.Request, key string) bool {
	if key == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	// The digests are compared, not the strings: ConstantTimeCompare
	// returns at once when the lengths differ, which would tell the key's
	// length to a client that times its answers.
	got, want := sha256.Sum256([]byte(strings.TrimSpace(token))), sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
