package gzfile

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	text := []byte(`{"nodes": [{"id": "a"}]}` + "\n")
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(text)
	w.Close()
	for name, data := range map[string][]byte{"plain.json": text, "packed.json.gz": z.Bytes(), "packed-no-suffix.json": z.Bytes()} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, text) || f.Compressed != (name != "plain.json") {
			t.Errorf("%s: %q %v, compressed %v", name, got, err, f.Compressed)
		}
	}
	// gzip's magic number and nothing readable after it: an error naming
	// the file, not garbage for a parser.
	bad := filepath.Join(dir, "bad.gz")
	os.WriteFile(bad, []byte{0x1f, 0x8b, 0, 0}, 0o644)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), "bad.gz") {
		t.Errorf("a broken gzip file: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file opened")
	}
}

func TestBase(t *testing.T) {
	for in, want := range map[string]string{
		"traces/mast/appworld-steps.json.gz": "appworld-steps",
		"b119b1f_2.txt":                      "b119b1f_2",
		"dir.d/noext":                        "noext",
		"x.gz":                               "x",
		".hidden":                            ".hidden",
	} {
		if got := Base(in); got != want {
			t.Errorf("Base(%q) = %q, want %q", in, got, want)
		}
	}
}
