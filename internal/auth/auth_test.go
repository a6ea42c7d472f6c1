package auth

import (
	"net/http/httptest"
	"testing"
)

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		key, header string
		want        bool
	}{
		{"", "", true},
		{"k1", "Bearer k1", true},
		{"k1", "bearer k1", true},
		{"k1", "Bearer k2", false},
		{"k1", "Bearer k1x", false},
		{"k1", "k1", false},
		{"k1", "Basic k1", false},
		{"k1", "", false},
	} {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := Bearer(r, tc.key); got != tc.want {
			t.Errorf("key %q header %q: %v, want %v", tc.key, tc.header, got, tc.want)
		}
	}
}

// BenchmarkBearer times the check of a wrong token of another length
// beside one of the key's length: the two must not differ (a comparison
// that returns early on a length mismatch tells a client the key's
// length). Compare their ns/op.
func BenchmarkBearer(b *testing.B) {
	const key = "sk-wfsched-0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ name, token string }{
		{"short-wrong", "x"},
		{"same-length-wrong", "sk-wfsched-0123456789abcdef0123456789abcdeX"},
		{"right", key},
	} {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.Header.Set("Authorization", "Bearer "+tc.token)
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				Bearer(r, key)
			}
		})
	}
}
