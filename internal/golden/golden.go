// Package golden compares test output with files under testdata and, with
// the -update flag, rewrites them.
//
// Every test package in the module imports this package (directly or with a
// blank import) so that `go test ./... -update` is accepted everywhere and
// rewrites every golden file at once. Read the diff of a rewritten golden
// file like code before committing it.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/tools/txtar"
)

var update = flag.Bool("update", false, "rewrite golden files with the current output")

// Updating reports whether -update was given.
func Updating() bool { return *update }

// Check compares got with the content of the file at path. With -update it
// writes got to path instead. A mismatch fails t with a go-cmp diff.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		write(t, path, got)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, d)
	}
}

// ReadArchive reads a txtar file.
func ReadArchive(t testing.TB, path string) *txtar.Archive {
	t.Helper()
	a, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Section returns the named file of an archive.
func Section(a *txtar.Archive, name string) ([]byte, bool) {
	for _, f := range a.Files {
		if f.Name == name {
			return f.Data, true
		}
	}
	return nil, false
}

// CheckSection compares got with the named file of the txtar archive at
// path. With -update it replaces (or appends) that file in the archive and
// rewrites it; drop names files that must no longer be in the archive (an
// expected error that became a result, say).
func CheckSection(t testing.TB, path, name string, got []byte, drop ...string) {
	t.Helper()
	a := ReadArchive(t, path)
	if *update {
		var files []txtar.File
		found := false
		for _, f := range a.Files {
			switch {
			case f.Name == name:
				f.Data = got
				found = true
			case contains(drop, f.Name):
				continue
			}
			files = append(files, f)
		}
		if !found {
			files = append(files, txtar.File{Name: name, Data: got})
		}
		a.Files = files
		write(t, path, txtar.Format(a))
		return
	}
	want, ok := Section(a, name)
	if !ok {
		t.Fatalf("%s: no section %q (run go test -update to create it)", path, name)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s: %s mismatch (-want +got):\n%s", path, name, d)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// write replaces path atomically.
func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".golden-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
	t.Logf("updated %s", path)
}
