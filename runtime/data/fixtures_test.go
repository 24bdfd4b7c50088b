package data

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// smallReleases makes the CIFAR readers expect few records per file, so
// tests can build whole releases in the official formats in a few KB.
func smallReleases(t testing.TB) {
	t.Helper()
	b, tr, te := cifar10BatchRecords, cifar100TrainRecords, cifar100TestRecords
	cifar10BatchRecords, cifar100TrainRecords, cifar100TestRecords = 3, 5, 2
	t.Cleanup(func() { cifar10BatchRecords, cifar100TrainRecords, cifar100TestRecords = b, tr, te })
}

// record is one image of a fixture as the test sees it.
type record struct {
	fine, coarse byte
	pixels       []byte // 3072 bytes, CHW
}

// randomRecords returns n records with random labels and pixels.
func randomRecords(r *rand.Rand, n int) []record {
	recs := make([]record, n)
	for i := range recs {
		recs[i].fine = byte(r.IntN(100))
		recs[i].coarse = byte(r.IntN(20))
		recs[i].pixels = make([]byte, cifarPixels)
		for j := range recs[i].pixels {
			recs[i].pixels[j] = byte(r.IntN(256))
		}
	}
	return recs
}

// encode writes records in the CIFAR-10 layout (label, pixels) or, for
// CIFAR-100, (coarse, fine, pixels). CIFAR-10 labels are fine % 10.
func encode(recs []record, cifar100 bool) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		if cifar100 {
			b.WriteByte(r.coarse)
			b.WriteByte(r.fine)
		} else {
			b.WriteByte(r.fine % 10)
		}
		b.Write(r.pixels)
	}
	return b.Bytes()
}

// fixture is a release: its files by name and the records of each split.
type fixture struct {
	files       map[string][]byte
	train, test []record
	cifar100    bool
}

func cifar10Fixture(seed uint64) *fixture {
	r := rand.New(rand.NewPCG(seed, 10))
	f := &fixture{files: map[string][]byte{}}
	for _, name := range filesOf(kindCIFAR10) {
		recs := randomRecords(r, cifar10BatchRecords)
		f.files[name] = encode(recs, false)
		if name == "test_batch.bin" {
			f.test = recs
		} else {
			f.train = append(f.train, recs...)
		}
	}
	f.files["batches.meta.txt"] = []byte("airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n")
	return f
}

func cifar100Fixture(seed uint64) *fixture {
	r := rand.New(rand.NewPCG(seed, 100))
	f := &fixture{files: map[string][]byte{}, cifar100: true}
	f.train = randomRecords(r, cifar100TrainRecords)
	f.test = randomRecords(r, cifar100TestRecords)
	f.files["train.bin"] = encode(f.train, true)
	f.files["test.bin"] = encode(f.test, true)
	var fine, coarse bytes.Buffer
	for i := range 100 {
		fine.WriteString("fine" + string(rune('A'+i/26)) + string(rune('a'+i%26)) + "\n")
	}
	for i := range 20 {
		coarse.WriteString("coarse" + string(rune('a'+i)) + "\n")
	}
	f.files["fine_label_names.txt"] = fine.Bytes()
	f.files["coarse_label_names.txt"] = coarse.Bytes()
	return f
}

func (f *fixture) folder() string {
	if f.cifar100 {
		return "cifar-100-binary"
	}
	return "cifar-10-batches-bin"
}

// writeDir writes the files of f into dir.
func (f *fixture) writeDir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range f.files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tarGz returns a .tar.gz of the files of f under prefix, in sorted order
// (reversed when reverse, to show that order does not matter).
func (f *fixture) tarGz(t testing.TB, prefix string, reverse bool) []byte {
	t.Helper()
	names := make([]string, 0, len(f.files))
	for n := range f.files {
		names = append(names, n)
	}
	sort.Strings(names)
	if reverse {
		for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
			names[i], names[j] = names[j], names[i]
		}
	}
	entries := []tarEntry{{name: prefix, dir: true}}
	for _, n := range names {
		entries = append(entries, tarEntry{name: prefix + n, data: f.files[n]})
	}
	return makeTarGz(t, entries)
}

type tarEntry struct {
	name string
	data []byte
	dir  bool
}

func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		if e.dir {
			h = &tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func makeTarGz(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(makeTar(t, entries))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func randFor(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }
