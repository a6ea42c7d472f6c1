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
