package data

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The CIFAR binary releases: records of label bytes and then a 32x32 RGB
// image, one plane after another, each plane row by row.
const (
	cifarC, cifarH, cifarW = 3, 32, 32
	cifarPixels            = cifarC * cifarH * cifarW
)

// kind is a dataset release.
type kind int

const (
	kindNone kind = iota
	kindCIFAR10
	kindCIFAR100
)

func (k kind) String() string {
	switch k {
	case kindCIFAR10:
		return "CIFAR-10"
	case kindCIFAR100:
		return "CIFAR-100"
	}
	return "no dataset"
}

// labelBytes is the number of label bytes before each image: the label for
// CIFAR-10; the coarse and then the fine label for CIFAR-100.
func (k kind) labelBytes() int {
	if k == kindCIFAR100 {
		return 2
	}
	return 1
}

func (k kind) recordSize() int { return k.labelBytes() + cifarPixels }

// folder and archive are the names the official releases use.
func (k kind) folder() string {
	if k == kindCIFAR100 {
		return "cifar-100-binary"
	}
	return "cifar-10-batches-bin"
}

func (k kind) archive() string {
	if k == kindCIFAR100 {
		return "cifar-100-binary.tar.gz"
	}
	return "cifar-10-binary.tar.gz"
}

// Records per data file. The releases fix them; they are variables so that
// tests can build small files in the same formats.
var (
	cifar10BatchRecords  = 10000 // each of data_batch_1..5.bin and test_batch.bin
	cifar100TrainRecords = 50000 // train.bin
	cifar100TestRecords  = 10000 // test.bin
)

// dataFile is the role of one file of a release.
type dataFile struct {
	kind  kind
	test  bool // part of the test split
	index int  // position within its split, in files
}

// dataFiles maps each data file name of both releases to its role.
var dataFiles = map[string]dataFile{
	"data_batch_1.bin": {kindCIFAR10, false, 0},
	"data_batch_2.bin": {kindCIFAR10, false, 1},
	"data_batch_3.bin": {kindCIFAR10, false, 2},
	"data_batch_4.bin": {kindCIFAR10, false, 3},
	"data_batch_5.bin": {kindCIFAR10, false, 4},
	"test_batch.bin":   {kindCIFAR10, true, 0},
	"train.bin":        {kindCIFAR100, false, 0},
	"test.bin":         {kindCIFAR100, true, 0},
}

// filesOf lists the data files of a release in order.
func filesOf(k kind) []string {
	if k == kindCIFAR100 {
		return []string{"train.bin", "test.bin"}
	}
	return []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"}
}

// recordsPer returns the number of records of one data file.
func recordsPer(f dataFile) int {
	switch {
	case f.kind == kindCIFAR10:
		return cifar10BatchRecords
	case f.test:
		return cifar100TestRecords
	default:
		return cifar100TrainRecords
	}
}

// filesPerSplit returns how many data files make up a split.
func filesPerSplit(k kind, test bool) int {
	if k == kindCIFAR10 && !test {
		return 5
	}
	return 1
}

// Names files: class names, one per line.
const (
	cifar10Names       = "batches.meta.txt"
	cifar100FineNames  = "fine_label_names.txt"
	cifar100CoarseName = "coarse_label_names.txt"
	maxNamesSize       = 1 << 20
)

// LoadOptions configures Load.
type LoadOptions struct {
	// Coarse selects the 20 CIFAR-100 superclasses as labels instead of the
	// 100 fine classes.
	Coarse bool
}

// Load reads a dataset: spec is "synthetic" (see Synthetic, seed 0,
// 50000/10000 images) or a path to a CIFAR-10 or CIFAR-100 binary release:
// the .tar.gz as distributed, or a folder holding the extracted files (the
// folder itself, or one containing cifar-10-batches-bin / cifar-100-binary,
// or one containing the .tar.gz, such as Download's cache). The kind is
// recognized from the file names. CIFAR-100: fine labels by default;
// coarse when opts.Coarse (Classes 20). ClassNames from batches.meta.txt /
// fine_label_names.txt (coarse_label_names.txt) when present.
func Load(spec string, opts LoadOptions) (train, test *Set, err error) {
	if spec == "synthetic" {
		train, test = Synthetic(0, 50000, 10000)
		return train, test, nil
	}
	return load(spec, kindNone, opts.Coarse)
}

// LoadCIFAR10 reads the CIFAR-10 binary release at path (see Load for the
// forms path may take).
func LoadCIFAR10(path string) (train, test *Set, err error) {
	return load(path, kindCIFAR10, false)
}

// LoadCIFAR100 reads the CIFAR-100 binary release at path (see Load for the
// forms path may take), with the 20 coarse labels when coarse and the 100
// fine labels otherwise.
func LoadCIFAR100(path string, coarse bool) (train, test *Set, err error) {
	return load(path, kindCIFAR100, coarse)
}

func load(p string, want kind, coarse bool) (train, test *Set, err error) {
	if p == "" {
		return nil, nil, errors.New("data: empty dataset path")
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, nil, err
	}
	r := &release{src: p, want: want, coarse: coarse}
	if !fi.IsDir() {
		if _, ok := dataFiles[filepath.Base(p)]; ok {
			return nil, nil, fmt.Errorf("%s: a single data file; give the folder that holds it or the .tar.gz", p)
		}
		if err := r.readArchive(p); err != nil {
			return nil, nil, err
		}
		return r.finish()
	}
	src, isArchive, err := r.locate(p)
	if err != nil {
		return nil, nil, err
	}
	r.src = src
	if isArchive {
		err = r.readArchive(src)
	} else {
		err = r.readFolder(src)
	}
	if err != nil {
		return nil, nil, err
	}
	return r.finish()
}

// release assembles the splits of one release from its files, in whatever
// order an archive holds them.
type release struct {
	src    string // the archive or folder, for messages
	want   kind   // the kind asked for; kindNone accepts either
	coarse bool

	kind        kind
	seen        []string // data files read
	train, test split
	names       map[string][]string // names files read
}

// split holds the decoded records of a split.
type split struct {
	images []byte
	fine   []int32 // the CIFAR-10 label, or the CIFAR-100 fine label
	coarse []int32 // CIFAR-100 only
}

// locate finds the release in folder dir: dir itself when it holds data
// files, else a release folder inside it, else a release archive inside
// it.
func (r *release) locate(dir string) (src string, isArchive bool, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false, err
	}
	type candidate struct {
		path    string
		kind    kind
		archive bool
	}
	var found []candidate
	has := func(name string, wantDir bool) bool {
		fi, err := os.Stat(filepath.Join(dir, name))
		return err == nil && fi.IsDir() == wantDir
	}
	for _, e := range entries {
		if _, ok := dataFiles[e.Name()]; ok {
			return dir, false, nil
		}
	}
	for _, k := range []kind{kindCIFAR10, kindCIFAR100} {
		if has(k.folder(), true) {
			found = append(found, candidate{filepath.Join(dir, k.folder()), k, false})
		}
	}
	for _, k := range []kind{kindCIFAR10, kindCIFAR100} {
		if has(k.archive(), false) {
			found = append(found, candidate{filepath.Join(dir, k.archive()), k, true})
		}
	}
	if len(found) == 0 {
		return "", false, fmt.Errorf("%s: no CIFAR-10 or CIFAR-100 release here (want its data files, the folder %s or %s, or %s or %s)",
			dir, kindCIFAR10.folder(), kindCIFAR100.folder(), kindCIFAR10.archive(), kindCIFAR100.archive())
	}
	if r.want == kindNone {
		for _, c := range found[1:] {
			if c.kind != found[0].kind {
				return "", false, fmt.Errorf("%s: holds both CIFAR-10 and CIFAR-100 (%s and %s); give the path of one", dir, filepath.Base(found[0].path), filepath.Base(c.path))
			}
		}
		return found[0].path, found[0].archive, nil
	}
	for _, c := range found {
		if c.kind == r.want {
			return c.path, c.archive, nil
		}
	}
	return "", false, fmt.Errorf("%s: holds %s (%s), not %s", dir, found[0].kind, filepath.Base(found[0].path), r.want)
}

// readFolder reads the release files in folder dir.
func (r *release) readFolder(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !r.wanted(name) {
			continue
		}
		if err := r.readFile(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func (r *release) readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", p)
	}
	return r.add(filepath.Base(p), p, bufio.NewReaderSize(f, 1<<16), fi.Size())
}

// wanted reports whether name is a data or names file of either release.
func (r *release) wanted(name string) bool {
	_, ok := dataFiles[name]
	return ok || name == cifar10Names || name == cifar100FineNames || name == cifar100CoarseName
}

// readArchive reads the release files of a .tar.gz (or plain .tar) file.
func (r *release) readArchive(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: not a readable .tar.gz: gzip header: %w", p, err)
		}
		defer zr.Close()
		in = bufio.NewReaderSize(zr, 1<<16)
	}
	return r.readTar(p, in)
}

// readTar reads the release files of tar stream in, named p in messages.
func (r *release) readTar(p string, in io.Reader) error {
	tr := tar.NewReader(in)
	entries := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if entries == 0 {
				return fmt.Errorf("%s: empty archive", p)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: not a readable .tar.gz: %w", p, err)
		}
		entries++
		name := path.Base(path.Clean(strings.ReplaceAll(h.Name, `\`, "/")))
		if !h.FileInfo().Mode().IsRegular() || !r.wanted(name) {
			continue
		}
		if err := r.add(name, p+": "+h.Name, tr, h.Size); err != nil {
			return err
		}
	}
}

// add reads release file name from in, which holds size bytes; where names
// it in messages.
func (r *release) add(name, where string, in io.Reader, size int64) error {
	if !strings.HasSuffix(name, ".bin") {
		if size > maxNamesSize {
			return fmt.Errorf("%s: %d bytes, too large for a list of class names", where, size)
		}
		b, err := io.ReadAll(io.LimitReader(in, size))
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if r.names == nil {
			r.names = map[string][]string{}
		}
		r.names[name] = parseNames(string(b))
		return nil
	}
	f := dataFiles[name]
	switch {
	case r.want != kindNone && f.kind != r.want:
		return fmt.Errorf("%s: a %s file (%s), not %s", where, f.kind, name, r.want)
	case r.kind == kindNone:
		r.kind = f.kind
	case r.kind != f.kind:
		return fmt.Errorf("%s: holds both CIFAR-10 and CIFAR-100 files (%s and %s)", r.src, r.seen[0], name)
	}
	if slices.Contains(r.seen, name) {
		return fmt.Errorf("%s: %s appears twice", r.src, name)
	}
	r.seen = append(r.seen, name)
	want := recordsPer(f)
	if err := checkSize(where, size, f.kind, want); err != nil {
		return err
	}
	s := &r.train
	if f.test {
		s = &r.test
	}
	if s.images == nil {
		s.alloc(f.kind, want*filesPerSplit(f.kind, f.test))
	}
	return readRecords(where, in, f.kind, want, s, f.index*want)
}

func (s *split) alloc(k kind, n int) {
	s.images = make([]byte, n*cifarPixels)
	s.fine = make([]int32, n)
	if k == kindCIFAR100 {
		s.coarse = make([]int32, n)
	}
}

// parseNames splits a names file into its non-empty lines.
func parseNames(text string) []string {
	var names []string
	for line := range strings.Lines(text) {
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	return names
}

// checkSize checks that a data file of size bytes holds want records of
// kind k, and says what the file looks like when it does not.
func checkSize(where string, size int64, k kind, want int) error {
	rec := int64(k.recordSize())
	if size%rec != 0 {
		hint := ""
		other := kindCIFAR100
		if k == kindCIFAR100 {
			other = kindCIFAR10
		}
		if o := int64(other.recordSize()); size > 0 && size%o == 0 {
			hint = fmt.Sprintf(" (it is a whole number of %d-byte records: a %s file given as %s?)", o, other, k)
		}
		return fmt.Errorf("%s: %d bytes, not a whole number of %d-byte records%s", where, size, rec, hint)
	}
	if n := size / rec; n != int64(want) {
		return fmt.Errorf("%s: %d records, want %d", where, n, want)
	}
	return nil
}

// readRecords decodes n records of kind k from in into s, starting at
// record at of s, checking every label.
func readRecords(where string, in io.Reader, k kind, n int, s *split, at int) error {
	if at < 0 || (at+n)*cifarPixels > len(s.images) || at+n > len(s.fine) || (k == kindCIFAR100 && at+n > len(s.coarse)) {
		panic("BUG: readRecords: destination too small")
	}
	var lab [2]byte
	lb := k.labelBytes()
	for i := range n {
		_, err := io.ReadFull(in, lab[:lb])
		if err == nil {
			_, err = io.ReadFull(in, s.images[(at+i)*cifarPixels:(at+i+1)*cifarPixels])
		}
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("%s: truncated at record %d (want %d records)", where, i, n)
			}
			return fmt.Errorf("%s: record %d: %w", where, i, err)
		}
		switch k {
		case kindCIFAR10:
			if lab[0] >= 10 {
				return fmt.Errorf("%s: record %d: label %d out of range [0, 10)", where, i, lab[0])
			}
			s.fine[at+i] = int32(lab[0])
		case kindCIFAR100:
			if lab[0] >= coarseClasses {
				return fmt.Errorf("%s: record %d: coarse label %d out of range [0, %d)", where, i, lab[0], coarseClasses)
			}
			if lab[1] >= 100 {
				return fmt.Errorf("%s: record %d: fine label %d out of range [0, 100)", where, i, lab[1])
			}
			s.coarse[at+i] = int32(lab[0])
			s.fine[at+i] = int32(lab[1])
		default:
			panic("BUG: readRecords of " + k.String())
		}
	}
	return nil
}

// finish checks that every data file was read and builds the two sets.
func (r *release) finish() (train, test *Set, err error) {
	if r.kind == kindNone {
		want := "CIFAR-10 or CIFAR-100"
		if r.want != kindNone {
			want = r.want.String()
		}
		return nil, nil, fmt.Errorf("%s: no %s data files (want %s, or %s)", r.src, want,
			strings.Join(filesOf(kindCIFAR10), ", "), strings.Join(filesOf(kindCIFAR100), " and "))
	}
	var missing []string
	for _, f := range filesOf(r.kind) {
		if !slices.Contains(r.seen, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%s: %s release lacks %s", r.src, r.kind, strings.Join(missing, ", "))
	}
	name, classes, namesFile := "cifar-10", 10, cifar10Names
	if r.kind == kindCIFAR100 {
		name, classes, namesFile = "cifar-100", 100, cifar100FineNames
		if r.coarse {
			name, classes, namesFile = "cifar-100-coarse", coarseClasses, cifar100CoarseName
		}
	}
	classNames, ok := r.names[namesFile]
	if ok && len(classNames) != classes {
		return nil, nil, fmt.Errorf("%s: %s has %d class names, want %d", r.src, namesFile, len(classNames), classes)
	}
	mk := func(s *split, part string) *Set {
		set := &Set{
			Name: name + "/" + part, N: len(s.fine), C: cifarC, H: cifarH, W: cifarW,
			Classes: classes, ClassNames: classNames, Images: s.images, Labels: s.fine, Coarse: s.coarse,
		}
		if r.coarse {
			set.Labels = s.coarse
		}
		return set
	}
	return mk(&r.train, "train"), mk(&r.test, "test"), nil
}
