package data

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkSet compares a loaded set with the records it was written from.
func checkSet(t *testing.T, s *Set, recs []record, name string, classes int, cifar100, coarse bool) {
	t.Helper()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Name != name || s.N != len(recs) || s.C != 3 || s.H != 32 || s.W != 32 || s.Classes != classes {
		t.Fatalf("set %q N=%d %dx%dx%d classes %d, want %q N=%d 3x32x32 classes %d", s.Name, s.N, s.C, s.H, s.W, s.Classes, name, len(recs), classes)
	}
	if len(s.ClassNames) != classes {
		t.Errorf("%d class names, want %d", len(s.ClassNames), classes)
	}
	if (s.Coarse != nil) != cifar100 {
		t.Errorf("Coarse present = %v, want %v", s.Coarse != nil, cifar100)
	}
	for i, r := range recs {
		want := int32(r.fine % 10)
		if cifar100 {
			want = int32(r.fine)
			if coarse {
				want = int32(r.coarse)
			}
			if s.Coarse[i] != int32(r.coarse) {
				t.Fatalf("image %d: coarse label %d, want %d", i, s.Coarse[i], r.coarse)
			}
		}
		if s.Labels[i] != want {
			t.Fatalf("image %d: label %d, want %d", i, s.Labels[i], want)
		}
		if !bytes.Equal(s.Image(i), r.pixels) {
			t.Fatalf("image %d: pixels differ", i)
		}
	}
}

// TestLoadCIFAR10Forms reads one CIFAR-10 release in every form a path can
// take and checks each against the records written.
func TestLoadCIFAR10Forms(t *testing.T) {
	smallReleases(t)
	f := cifar10Fixture(1)
	dir := t.TempDir()
	f.writeDir(t, filepath.Join(dir, "parent", "cifar-10-batches-bin"))
	writeFile(t, filepath.Join(dir, "cifar-10-binary.tar.gz"), f.tarGz(t, "cifar-10-batches-bin/", false))
	writeFile(t, filepath.Join(dir, "reversed.tar.gz"), f.tarGz(t, "./cifar-10-batches-bin/", true))
	writeFile(t, filepath.Join(dir, "flat.tar"), f.tarGz(t, "", false))
	writeFile(t, filepath.Join(dir, "cache", "cifar-10-binary.tar.gz"), f.tarGz(t, "cifar-10-batches-bin/", false))
	for _, p := range []string{
		"cifar-10-binary.tar.gz", "reversed.tar.gz", "flat.tar",
		"parent", "parent/cifar-10-batches-bin", "cache",
	} {
		t.Run(p, func(t *testing.T) {
			for _, load := range []func(string) (*Set, *Set, error){
				LoadCIFAR10,
				func(p string) (*Set, *Set, error) { return Load(p, LoadOptions{}) },
			} {
				train, test, err := load(filepath.Join(dir, p))
				if err != nil {
					t.Fatal(err)
				}
				checkSet(t, train, f.train, "cifar-10/train", 10, false, false)
				checkSet(t, test, f.test, "cifar-10/test", 10, false, false)
				if train.ClassNames[0] != "airplane" || train.ClassNames[9] != "truck" {
					t.Errorf("class names %q", train.ClassNames)
				}
			}
		})
	}
}

// TestLoadCIFAR100 checks fine and coarse labels from a folder and a .tar.gz.
func TestLoadCIFAR100(t *testing.T) {
	smallReleases(t)
	f := cifar100Fixture(2)
	dir := t.TempDir()
	f.writeDir(t, filepath.Join(dir, "cifar-100-binary"))
	writeFile(t, filepath.Join(dir, "c100.tar.gz"), f.tarGz(t, "cifar-100-binary/", false))
	for _, p := range []string{dir, filepath.Join(dir, "cifar-100-binary"), filepath.Join(dir, "c100.tar.gz")} {
		for _, coarse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/coarse=%v", filepath.Base(p), coarse), func(t *testing.T) {
				name, classes := "cifar-100", 100
				if coarse {
					name, classes = "cifar-100-coarse", 20
				}
				train, test, err := LoadCIFAR100(p, coarse)
				if err != nil {
					t.Fatal(err)
				}
				checkSet(t, train, f.train, name+"/train", classes, true, coarse)
				checkSet(t, test, f.test, name+"/test", classes, true, coarse)
				want := "fineAa"
				if coarse {
					want = "coarsea"
				}
				if train.ClassNames[0] != want {
					t.Errorf("class name 0 %q, want %q", train.ClassNames[0], want)
				}
				train2, _, err := Load(p, LoadOptions{Coarse: coarse})
				if err != nil {
					t.Fatal(err)
				}
				checkSet(t, train2, f.train, name+"/train", classes, true, coarse)
			})
		}
	}
}

// TestLoadWithoutNames checks that the names files are optional.
func TestLoadWithoutNames(t *testing.T) {
	smallReleases(t)
	f := cifar10Fixture(3)
	delete(f.files, "batches.meta.txt")
	dir := t.TempDir()
	f.writeDir(t, dir)
	train, _, err := LoadCIFAR10(dir)
	if err != nil {
		t.Fatal(err)
	}
	if train.ClassNames != nil {
		t.Errorf("class names %q without a names file", train.ClassNames)
	}
}

// TestLoadErrors checks that each broken release is an error that names
// the file and says what is wrong.
func TestLoadErrors(t *testing.T) {
	smallReleases(t)
	rec10, rec100 := kindCIFAR10.recordSize(), kindCIFAR100.recordSize()
	type mutation func(f *fixture)
	for _, c := range []struct {
		name   string
		c100   bool
		mutate mutation
		want   []string
	}{
		{"truncated", false, func(f *fixture) { b := f.files["data_batch_3.bin"]; f.files["data_batch_3.bin"] = b[:len(b)-1] },
			[]string{"data_batch_3.bin: 9218 bytes, not a whole number of 3073-byte records"}},
		{"short", false, func(f *fixture) { f.files["data_batch_2.bin"] = f.files["data_batch_2.bin"][:2*rec10] },
			[]string{"data_batch_2.bin: 2 records, want 3"}},
		{"long", false, func(f *fixture) {
			f.files["test_batch.bin"] = append(f.files["test_batch.bin"], f.files["test_batch.bin"][:rec10]...)
		},
			[]string{"test_batch.bin: 4 records, want 3"}},
		{"label", false, func(f *fixture) { f.files["data_batch_4.bin"][2*rec10] = 10 },
			[]string{"data_batch_4.bin: record 2: label 10 out of range [0, 10)"}},
		{"missing", false, func(f *fixture) { delete(f.files, "data_batch_4.bin"); delete(f.files, "test_batch.bin") },
			[]string{"CIFAR-10 release lacks data_batch_4.bin, test_batch.bin"}},
		{"names", false, func(f *fixture) { f.files["batches.meta.txt"] = []byte("cat\ndog\n") },
			[]string{"batches.meta.txt has 2 class names, want 10"}},
		{"cifar100 records", false, func(f *fixture) {
			f.files["data_batch_1.bin"] = bytes.Repeat([]byte{1}, 3*rec100)
		}, []string{"data_batch_1.bin: 9222 bytes, not a whole number of 3073-byte records", "CIFAR-100 file given as CIFAR-10"}},
		{"coarse label", true, func(f *fixture) { f.files["train.bin"][4*rec100] = 20 },
			[]string{"train.bin: record 4: coarse label 20 out of range [0, 20)"}},
		{"fine label", true, func(f *fixture) { f.files["test.bin"][rec100+1] = 100 },
			[]string{"test.bin: record 1: fine label 100 out of range [0, 100)"}},
		{"cifar10 records", true, func(f *fixture) { f.files["test.bin"] = bytes.Repeat([]byte{1}, 2*rec10) },
			[]string{"test.bin: 6146 bytes, not a whole number of 3074-byte records", "CIFAR-10 file given as CIFAR-100"}},
		{"no train", true, func(f *fixture) { delete(f.files, "train.bin") },
			[]string{"CIFAR-100 release lacks train.bin"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := cifar10Fixture(4)
			if c.c100 {
				f = cifar100Fixture(4)
			}
			c.mutate(f)
			dir := t.TempDir()
			f.writeDir(t, filepath.Join(dir, f.folder()))
			archive := writeFile(t, filepath.Join(dir, "a.tar.gz"), f.tarGz(t, f.folder()+"/", false))
			for _, p := range []string{filepath.Join(dir, f.folder()), archive} {
				_, _, err := Load(p, LoadOptions{})
				wantErr(t, err, append([]string{p}, c.want...)...)
			}
		})
	}
}

// wantErr fails unless err contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

// TestLoadPathErrors covers paths that are not a release, archives that are
// corrupt or incomplete, and a release of the other kind.
func TestLoadPathErrors(t *testing.T) {
	smallReleases(t)
	dir := t.TempDir()
	f10, f100 := cifar10Fixture(5), cifar100Fixture(5)
	good := f10.tarGz(t, "cifar-10-batches-bin/", false)
	p := func(name string, b []byte) string { return writeFile(t, filepath.Join(dir, name), b) }
	f100.writeDir(t, filepath.Join(dir, "only100", "cifar-100-binary"))
	f10.writeDir(t, filepath.Join(dir, "both", "cifar-10-batches-bin"))
	f100.writeDir(t, filepath.Join(dir, "both", "cifar-100-binary"))
	f10.writeDir(t, filepath.Join(dir, "flat10"))
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	dup := makeTarGz(t, []tarEntry{
		{name: "a/data_batch_1.bin", data: f10.files["data_batch_1.bin"]},
		{name: "b/data_batch_1.bin", data: f10.files["data_batch_1.bin"]},
	})
	mixed := makeTarGz(t, []tarEntry{
		{name: "data_batch_1.bin", data: f10.files["data_batch_1.bin"]},
		{name: "train.bin", data: f100.files["train.bin"]},
	})
	for _, c := range []struct {
		name string
		load func() error
		want []string
	}{
		{"nonexistent", func() error { _, _, err := LoadCIFAR10(filepath.Join(dir, "nope")); return err }, []string{"nope", "no such file"}},
		{"empty spec", func() error { _, _, err := Load("", LoadOptions{}); return err }, []string{"empty dataset path"}},
		{"not gzip", func() error {
			_, _, err := LoadCIFAR10(p("x.tar.gz", []byte("hello, this is not an archive at all")))
			return err
		}, []string{"x.tar.gz: not a readable .tar.gz"}},
		{"bad gzip header", func() error { _, _, err := LoadCIFAR10(p("h.tar.gz", []byte{0x1f, 0x8b, 1, 2, 3})); return err }, []string{"h.tar.gz", "gzip"}},
		{"truncated gzip", func() error { _, _, err := LoadCIFAR10(p("t.tar.gz", good[:len(good)/2])); return err }, []string{"t.tar.gz: cifar-10-batches-bin/data_batch_3.bin: truncated at record 2"}},
		{"corrupt gzip", func() error {
			b := bytes.Clone(good)
			for i := 100; i < len(b)-8; i += 97 {
				b[i] ^= 0x55
			}
			_, _, err := LoadCIFAR10(p("c.tar.gz", b))
			return err
		}, []string{"c.tar.gz"}},
		{"archive lacks files", func() error {
			_, _, err := LoadCIFAR10(p("l.tar.gz", makeTarGz(t, []tarEntry{{name: "readme.html", data: []byte("hi")}})))
			return err
		}, []string{"l.tar.gz: no CIFAR-10 data files"}},
		{"empty archive", func() error { _, _, err := LoadCIFAR10(p("e.tar.gz", makeTarGz(t, nil))); return err }, []string{"e.tar.gz: empty archive"}},
		{"cifar-100 archive as cifar-10", func() error {
			_, _, err := LoadCIFAR10(p("c100.tar.gz", f100.tarGz(t, "cifar-100-binary/", false)))
			return err
		}, []string{"c100.tar.gz: cifar-100-binary/", "a CIFAR-100 file (", "not CIFAR-10"}},
		{"cifar-100 folder as cifar-10", func() error { _, _, err := LoadCIFAR10(filepath.Join(dir, "only100")); return err },
			[]string{"only100: holds CIFAR-100 (cifar-100-binary), not CIFAR-10"}},
		{"cifar-10 folder as cifar-100", func() error { _, _, err := LoadCIFAR100(filepath.Join(dir, "flat10"), false); return err },
			[]string{"data_batch_", "a CIFAR-10 file", "not CIFAR-100"}},
		{"both kinds", func() error { _, _, err := Load(filepath.Join(dir, "both"), LoadOptions{}); return err },
			[]string{"both: holds both CIFAR-10 and CIFAR-100"}},
		{"both kinds in an archive", func() error { _, _, err := Load(p("m.tar.gz", mixed), LoadOptions{}); return err },
			[]string{"m.tar.gz: holds both CIFAR-10 and CIFAR-100 files (data_batch_1.bin and train.bin)"}},
		{"duplicate", func() error { _, _, err := Load(p("d.tar.gz", dup), LoadOptions{}); return err },
			[]string{"d.tar.gz: data_batch_1.bin appears twice"}},
		{"empty folder", func() error { _, _, err := Load(filepath.Join(dir, "empty"), LoadOptions{}); return err },
			[]string{"empty: no CIFAR-10 or CIFAR-100 release here"}},
		{"single file", func() error {
			_, _, err := LoadCIFAR10(filepath.Join(dir, "flat10", "data_batch_1.bin"))
			return err
		}, []string{"data_batch_1.bin: a single data file"}},
	} {
		t.Run(c.name, func(t *testing.T) { wantErr(t, c.load(), c.want...) })
	}
}

// TestCheckSizeRealCounts checks the messages at the official record
// counts.
func TestCheckSizeRealCounts(t *testing.T) {
	wantErr(t, checkSize("data_batch_3.bin", 30729999, kindCIFAR10, 10000),
		"data_batch_3.bin: 30729999 bytes, not a whole number of 3073-byte records")
	wantErr(t, checkSize("data_batch_3.bin", 30726927, kindCIFAR10, 10000), "9999 records, want 10000")
	wantErr(t, checkSize("test_batch.bin", 10000*3074, kindCIFAR10, 10000), "a CIFAR-100 file given as CIFAR-10")
	if err := checkSize("data_batch_3.bin", 30730000, kindCIFAR10, 10000); err != nil {
		t.Error(err)
	}
	if err := checkSize("train.bin", 50000*3074, kindCIFAR100, 50000); err != nil {
		t.Error(err)
	}
}

// FuzzReadRecords checks that the record parser never panics and that what
// it accepts matches the bytes: labels at each record's start, pixels after.
// With short, it claims one record more than the input holds, which must be
// reported as a truncation.
func FuzzReadRecords(f *testing.F) {
	f.Add(encode(randomRecords(randFor(1), 2), false), false, false)
	f.Add(encode(randomRecords(randFor(2), 2), true), true, false)
	f.Add([]byte{}, false, true)
	f.Add(append([]byte{19, 99}, make([]byte, 3072)...), true, false)
	f.Fuzz(func(t *testing.T, b []byte, c100, short bool) {
		k := kindCIFAR10
		if c100 {
			k = kindCIFAR100
		}
		rs := k.recordSize()
		n := len(b) / rs
		b = b[:n*rs]
		claim := n
		if short {
			claim++
		}
		var s split
		s.alloc(k, claim)
		err := readRecords("f", bytes.NewReader(b), k, claim, &s, 0)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f: record ") && !strings.HasPrefix(err.Error(), "f: truncated at record ") {
				t.Fatalf("error %q does not name the file and record", err)
			}
			return
		}
		if short {
			t.Fatalf("%d records read from %d bytes", claim, len(b))
		}
		for i := range n {
			r := b[i*rs : (i+1)*rs]
			if !bytes.Equal(s.images[i*cifarPixels:(i+1)*cifarPixels], r[k.labelBytes():]) {
				t.Fatalf("record %d: pixels differ", i)
			}
			if c100 && (s.coarse[i] != int32(r[0]) || s.fine[i] != int32(r[1]) || r[0] >= 20 || r[1] >= 100) ||
				!c100 && (s.fine[i] != int32(r[0]) || r[0] >= 10) {
				t.Fatalf("record %d: labels %d/%d from bytes %d %d", i, s.coarse, s.fine[i], r[0], r[1])
			}
		}
	})
}

// FuzzReadTar checks that no archive makes the reader panic and that a
// release it accepts is a valid pair of sets.
func FuzzReadTar(f *testing.F) {
	smallReleases(f)
	f10 := cifar10Fixture(6)
	f.Add(makeTar(f, []tarEntry{{name: "x/data_batch_1.bin", data: f10.files["data_batch_1.bin"]}, {name: "batches.meta.txt", data: f10.files["batches.meta.txt"]}}))
	f.Add(makeTar(f, []tarEntry{{name: "x/", dir: true}, {name: "x/test.bin", data: []byte{1, 2, 3}}}))
	f.Add(makeTar(f, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &release{src: "fuzz.tar"}
		if err := r.readTar("fuzz.tar", bytes.NewReader(b)); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.tar") {
				t.Fatalf("error %q does not name the archive", err)
			}
			return
		}
		train, test, err := r.finish()
		if err != nil {
			return
		}
		for _, s := range []*Set{train, test} {
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
