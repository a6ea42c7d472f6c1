// Package gzfile opens input files that may be gzip-compressed: a file
// whose first bytes are gzip's magic number is read decompressed, any other
// as it is, whatever its name. Every trace format and capture file wfsched
// reads goes through it, so each reads .gz alike. Callers bound what they
// read (a small compressed file can expand a thousandfold).
package gzfile

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"
)

// magic starts every gzip stream (RFC 1952).
var magic = []byte{0x1f, 0x8b}

// File is an opened input: its decompressed bytes when it was compressed.
type File struct {
	io.Reader
	f          *os.File
	z          *gzip.Reader
	Compressed bool
}

// Open opens the file at path for reading.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(f)
	head, _ := br.Peek(len(magic))
	if string(head) != string(magic) {
		return &File{Reader: br, f: f}, nil
	}
	z, err := gzip.NewReader(br)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: a gzip file that cannot be read: %w", path, err)
	}
	return &File{Reader: z, f: f, z: z, Compressed: true}, nil
}

// Stat describes the file on disk (its compressed size, if compressed).
func (f *File) Stat() (os.FileInfo, error) { return f.f.Stat() }

// Close closes the file.
func (f *File) Close() error {
	if f.z != nil {
		f.z.Close()
	}
	return f.f.Close()
}

// Base is a file name without its directory, its .gz and its extension:
// "traces/appworld.json.gz" gives "appworld".
func Base(path string) string {
	name := path[strings.LastIndexAny(path, `/\`)+1:]
	name = strings.TrimSuffix(name, ".gz")
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		name = name[:i]
	}
	return name
}
