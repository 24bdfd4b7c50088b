package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// le encodes values little-endian, independently of the package's own
// encoder: the oracle for data bytes.
func le(values ...any) []byte {
	var b []byte
	for _, v := range values {
		switch v := v.(type) {
		case float32:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		case float64:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		case int32:
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		case int64:
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		case uint8:
			b = append(b, v)
		default:
			panic("BUG: le: unsupported type")
		}
	}
	return b
}

// rawFile assembles a file from a header and data, without padding.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// bytesOf returns the bytes a tensor holds, encoding an F32 tensor.
func bytesOf(t Tensor) []byte {
	if !t.lazy() {
		return t.Data
	}
	var b []byte
	for _, v := range t.f32 {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// diffTensors describes the first difference between two tensor lists,
// or returns "".
func diffTensors(got, want []Tensor) string {
	if len(got) != len(want) {
		return "got " + strconv.Itoa(len(got)) + " tensors, want " + strconv.Itoa(len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		switch {
		case g.Name != w.Name:
			return "tensor " + strconv.Itoa(i) + ": name " + g.Name + ", want " + w.Name
		case g.DType != w.DType:
			return "tensor " + w.Name + ": dtype " + g.DType + ", want " + w.DType
		case !slices.Equal(g.Shape, w.Shape):
			return "tensor " + w.Name + ": shapes differ"
		case !bytes.Equal(bytesOf(g), bytesOf(w)):
			return "tensor " + w.Name + ": data differs"
		}
	}
	return ""
}

func sameMetadata(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func mustWrite(t testing.TB, tensors []Tensor, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustRead(t testing.TB, b []byte) *File {
	t.Helper()
	f, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func sampleTensors() []Tensor {
	return []Tensor{
		F32("conv1.w", []int{2, 3}, []float32{1, -2.5, 3e-7, float32(math.Inf(1)), 0, -0.125}),
		{Name: "step", DType: "I64", Shape: []int{}, Data: le(int64(-9000000000))},
		{Name: "lr", DType: "F64", Shape: nil, Data: le(0.1)},
		{Name: "idx", DType: "I32", Shape: []int{3}, Data: le(int32(1), int32(-2), int32(1<<30))},
		F32("empty", []int{0, 4}, nil),
		{Name: "labels", DType: "U8", Shape: []int{5}, Data: le(uint8(0), uint8(9), uint8(255), uint8(3), uint8(7))},
		{Name: "none", DType: "U8", Shape: []int{0}, Data: []byte{}},
		F32("bn.γ \"quoted\"\n", []int{1}, []float32{2}),
	}
}

func TestRoundTrip(t *testing.T) {
	want := sampleTensors()
	meta := map[string]string{"format": "pt", "epoch": "3", "arch": "preact-1001", "": "empty key", "note": "tab\there"}
	b := mustWrite(t, want, meta)

	n := binary.LittleEndian.Uint64(b)
	if n%8 != 0 || len(b) < 8+int(n) {
		t.Fatalf("header length %d: want a multiple of 8 within the %d-byte file", n, len(b))
	}
	f := mustRead(t, b)
	if d := diffTensors(f.Tensors, want); d != "" {
		t.Error(d)
	}
	if !sameMetadata(f.Metadata, meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	for _, w := range want {
		got, ok := f.Tensor(w.Name)
		if !ok || got.Name != w.Name || !bytes.Equal(got.Data, bytesOf(w)) {
			t.Errorf("Tensor(%q) = %v, %v", w.Name, got.Name, ok)
		}
	}
	if _, ok := f.Tensor("missing"); ok {
		t.Error("Tensor(missing) found a tensor")
	}
	// Data read from the file is capped: appending does not clobber the
	// next tensor.
	first, _ := f.Tensor("step")
	_ = append(first.Data, 0xff)
	if lr, _ := f.Tensor("lr"); !bytes.Equal(lr.Data, le(0.1)) {
		t.Error("appending to one tensor's data changed the next one")
	}

	got := make([]float32, 6)
	c, _ := f.Tensor("conv1.w")
	if err := c.Float32s(got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float32{1, -2.5, 3e-7, float32(math.Inf(1)), 0, -0.125}) {
		t.Errorf("Float32s = %v", got)
	}
	e, _ := f.Tensor("empty")
	if err := e.Float32s(nil); err != nil {
		t.Errorf("Float32s of a zero-size tensor: %v", err)
	}

	// Deterministic: the same input gives the same bytes, whatever the
	// map's iteration order; and a file read back writes the same bytes.
	for range 5 {
		meta2 := map[string]string{}
		for k, v := range meta {
			meta2[k] = v
		}
		if !bytes.Equal(mustWrite(t, want, meta2), b) {
			t.Fatal("Write gave different bytes for the same input")
		}
	}
	if !bytes.Equal(mustWrite(t, f.Tensors, f.Metadata), b) {
		t.Error("rewriting a file read back gave different bytes")
	}

	// Without metadata, there is no "__metadata__" and Read returns nil.
	b = mustWrite(t, want[:2], nil)
	if bytes.Contains(b, []byte(metadataKey)) {
		t.Error("Write without metadata wrote a __metadata__ key")
	}
	if f := mustRead(t, b); f.Metadata != nil {
		t.Errorf("metadata %v, want nil", f.Metadata)
	}

	// An empty file: just "{}" padded.
	b = mustWrite(t, nil, nil)
	if want := "\x08\x00\x00\x00\x00\x00\x00\x00{}      "; string(b) != want {
		t.Errorf("empty file = %q, want %q", b, want)
	}
	if f := mustRead(t, b); len(f.Tensors) != 0 {
		t.Errorf("empty file has %d tensors", len(f.Tensors))
	}
}

func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.safetensors")
	want := sampleTensors()
	if err := WriteFile(path, want, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTensors(f.Tensors, want); d != "" {
		t.Error(d)
	}
	if f.Metadata["k"] != "v" {
		t.Errorf("metadata %v", f.Metadata)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("new file mode %v, want 0644", fi.Mode().Perm())
		}
	}
}

// TestHandAssembled checks Write byte for byte against a file assembled
// by hand from the format's description, and Read against the values put
// in it, so that other tools read what Write writes.
func TestHandAssembled(t *testing.T) {
	want := []byte("\x90\x00\x00\x00\x00\x00\x00\x00" +
		`{"__metadata__":{"format":"pt"},` +
		`"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"a":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}` +
		"      " + // 138 bytes of JSON padded to 144 = 0x90
		"\x00\x00\x80\x3f" + "\x00\x00\x00\xc0" + // float32 1, -2
		"\x07\x00\x00\x00\x00\x00\x00\x00") // int64 7
	got := mustWrite(t, []Tensor{
		F32("b", []int{2}, []float32{1, -2}),
		{Name: "a", DType: "I64", Shape: []int{}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}},
	}, map[string]string{"format": "pt"})
	if !bytes.Equal(got, want) {
		t.Errorf("Write =\n%q\nwant\n%q", got, want)
	}

	f := mustRead(t, want)
	if len(f.Tensors) != 2 || f.Tensors[0].Name != "b" || f.Tensors[1].Name != "a" {
		t.Fatalf("tensors %v, want b then a", f.Tensors)
	}
	v := make([]float32, 2)
	if err := f.Tensors[0].Float32s(v); err != nil || v[0] != 1 || v[1] != -2 {
		t.Errorf("b = %v, %v; want [1 -2]", v, err)
	}
	a := f.Tensors[1]
	if a.DType != "I64" || len(a.Shape) != 0 || binary.LittleEndian.Uint64(a.Data) != 7 {
		t.Errorf("a = %+v, want the I64 scalar 7", a)
	}
	if f.Metadata["format"] != "pt" || len(f.Metadata) != 1 {
		t.Errorf("metadata %v", f.Metadata)
	}
}

// TestForeignFile reads a file laid out as another writer might: spaces
// and newlines in the JSON, fields in another order, an unknown field,
// tensors listed out of data order, no padding, a zero-size tensor at the
// end of the data. Read returns the tensors in data order, and writing
// them gives the canonical bytes, written out by hand.
func TestForeignFile(t *testing.T) {
	header := "{\n" +
		` "e": {"shape": [0, 3], "dtype": "F64", "data_offsets": [9, 9]},` + "\n" +
		` "w": {"data_offsets": [1, 9], "extra": {"x": [1, 2, {"y": null}]}, "shape": [2], "dtype": "F32"},` + "\n" +
		` "s": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]}` + "\n}\n"
	data := []byte{42, 0, 0, 0, 0x3f, 0, 0, 0x40, 0x40} // U8 42, float32 0.5, 3
	f := mustRead(t, rawFile(header, data))
	want := []Tensor{
		{Name: "s", DType: "U8", Shape: []int{}, Data: []byte{42}},
		F32("w", []int{2}, []float32{0.5, 3}),
		{Name: "e", DType: "F64", Shape: []int{0, 3}, Data: []byte{}},
	}
	if d := diffTensors(f.Tensors, want); d != "" {
		t.Error(d)
	}
	canon := []byte("\xa0\x00\x00\x00\x00\x00\x00\x00" +
		`{"s":{"dtype":"U8","shape":[],"data_offsets":[0,1]},` +
		`"w":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},` +
		`"e":{"dtype":"F64","shape":[0,3],"data_offsets":[9,9]}}` + // 160 bytes = 0xa0, no padding
		"\x2a\x00\x00\x00\x3f\x00\x00\x40\x40")
	if got := mustWrite(t, f.Tensors, f.Metadata); !bytes.Equal(got, canon) {
		t.Errorf("Write =\n%q\nwant\n%q", got, canon)
	}
}

type readCase struct {
	name string
	file []byte
	want string // a substring of the error
}

func readErrorCases() []readCase {
	f32 := func(name string, shape string, offs string) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":` + offs + `}`
	}
	eight := make([]byte, 8)
	return []readCase{
		{"empty", nil, "file is 0 bytes, shorter than the 8-byte header length"},
		{"short", []byte{1, 0, 0}, "file is 3 bytes, shorter than the 8-byte header length"},
		{"header past file", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...),
			"header length 100 exceeds the 2 bytes that follow the length field"},
		{"header over cap", append(binary.LittleEndian.AppendUint64(nil, MaxHeaderLen+1), "{}"...),
			"header length 100000001 exceeds the limit of 100000000 bytes"},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, math.MaxUint64),
			"header length 18446744073709551615 exceeds the limit"},
		{"empty header", rawFile("", nil), "header does not start with '{'"},
		{"array header", rawFile(`[1,2]`, nil), "header does not start with '{'"},
		{"leading space", rawFile(` {}`, nil), "header does not start with '{'"},
		{"not utf8", rawFile("{\"\xff\":1}", nil), "header is not valid UTF-8"},
		{"truncated json", rawFile(`{"a":{"dtype"`, nil), "header is not valid JSON"},
		{"bad json", rawFile(`{"a" 1}`, nil), "header is not valid JSON: header byte 5"},
		{"trailing comma", rawFile(`{"__metadata__":{},}`, nil), "header is not valid JSON"},
		{"two objects", rawFile(`{} {}`, nil), "header has more after its JSON object"},
		{"trailing junk", rawFile(`{}x`, nil), "header has more after its JSON object"},
		{"tensor not object", rawFile(`{"a":5}`, nil), `tensor "a" is the number 5, want an object`},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F17","shape":[],"data_offsets":[0,4]}}`, eight[:4]),
			`tensor "a": unknown dtype "F17" (want one of BF16, BOOL,`},
		{"dtype not string", rawFile(`{"a":{"dtype":4,"shape":[],"data_offsets":[0,4]}}`, eight[:4]),
			`tensor "a": dtype is the number 4, want a string`},
		{"negative dim", rawFile(`{`+f32("a", "[2,-3]", "[0,8]")+`}`, eight),
			`tensor "a": shape[1] is -3: a dimension cannot be negative`},
		{"fractional dim", rawFile(`{`+f32("a", "[1.5]", "[0,8]")+`}`, eight),
			`tensor "a": header byte 29: shape[0] is 1.5, not an integer`},
		{"exponent dim", rawFile(`{`+f32("a", "[2e0]", "[0,8]")+`}`, eight), `shape[0] is 2e0, not an integer`},
		{"huge dim", rawFile(`{`+f32("a", "[99999999999999999999]", "[0,8]")+`}`, eight),
			`shape[0] is 99999999999999999999, out of range`},
		{"shape not array", rawFile(`{`+f32("a", `"2"`, "[0,8]")+`}`, eight),
			`tensor "a": header byte 28: shape is the string "2", want an array`},
		{"dim not number", rawFile(`{`+f32("a", `[null]`, "[0,8]")+`}`, eight), `shape[0] is null, want an integer`},
		{"shape overflow", rawFile(`{`+f32("a", "[4294967296,4294967296,4294967296]", "[0,8]")+`}`, eight),
			`tensor "a": shape [4294967296 4294967296 4294967296] is too large`},
		{"bytes overflow", rawFile(`{`+f32("a", "[4611686018427387904]", "[0,8]")+`}`, eight),
			`tensor "a": shape [4611686018427387904] of F32 is too large`},
		{"size mismatch", rawFile(`{`+f32("a", "[3]", "[0,8]")+`}`, eight),
			`tensor "a": data_offsets [0, 8] span 8 bytes, but F32 [3] needs 12`},
		{"offsets reversed", rawFile(`{`+f32("a", "[2]", "[8,0]")+`}`, eight),
			`tensor "a": data_offsets [8, 0] end before they begin`},
		{"one offset", rawFile(`{`+f32("a", "[2]", "[8]")+`}`, eight),
			`tensor "a": data_offsets has 1 values, want 2 (begin and end)`},
		{"negative offset", rawFile(`{`+f32("a", "[0]", "[-1,-1]")+`}`, eight),
			`tensor "a": data_offsets [-1 -1]: offsets cannot be negative`},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[2]}}`, eight), `tensor "a": missing "data_offsets"`},
		{"missing dtype", rawFile(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, eight), `tensor "a": missing "dtype"`},
		{"duplicate field", rawFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, eight),
			`tensor "a": duplicate field "dtype"`},
		{"out of range", rawFile(`{`+f32("a", "[2]", "[0,8]")+`}`, eight[:4]),
			`tensor "a": data_offsets [0, 8] run past the end of the 4 data bytes`},
		{"overlap", rawFile(`{`+f32("a", "[2]", "[0,8]")+`,`+f32("b", "[2]", "[4,12]")+`}`, make([]byte, 12)),
			`tensor "b": data_offsets [4, 12] overlap tensor "a", which ends at 8`},
		{"zero-size inside another", rawFile(`{`+f32("a", "[2]", "[0,8]")+`,`+f32("z", "[0]", "[4,4]")+`}`, eight),
			`tensor "z": data_offsets [4, 4] overlap tensor "a", which ends at 8`},
		{"gap", rawFile(`{`+f32("a", "[1]", "[0,4]")+`,`+f32("b", "[1]", "[8,12]")+`}`, make([]byte, 12)),
			`tensor "b": data_offsets [8, 12] leave data bytes [4, 8) after tensor "a" uncovered`},
		{"gap at start", rawFile(`{`+f32("a", "[1]", "[4,8]")+`}`, eight),
			`tensor "a": data_offsets [4, 8] leave data bytes [0, 4) at the start of the data uncovered`},
		{"uncovered tail", rawFile(`{`+f32("a", "[1]", "[0,4]")+`}`, eight),
			`tensors cover 4 data bytes but the file has 8: data bytes [4, 8) are uncovered`},
		{"data but no tensors", rawFile(`{}`, eight[:1]), `tensors cover 0 data bytes but the file has 1`},
		{"duplicate tensor", rawFile(`{`+f32("a", "[0]", "[0,0]")+`,`+f32("a", "[0]", "[0,0]")+`}`, nil),
			`duplicate tensor "a"`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), `duplicate "__metadata__"`},
		{"duplicate metadata key", rawFile(`{"__metadata__":{"k":"1","k":"2"}}`, nil), `duplicate __metadata__ key "k"`},
		{"metadata number", rawFile(`{"__metadata__":{"k":1}}`, nil), `__metadata__ "k" is the number 1, want a string`},
		{"metadata object", rawFile(`{"__metadata__":{"k":{}}}`, nil), `__metadata__ "k" is an object, want a string`},
		{"metadata null", rawFile(`{"__metadata__":null}`, nil), `__metadata__ is null, want an object`},
		{"metadata array", rawFile(`{"__metadata__":["a"]}`, nil), `__metadata__ is an array, want an object`},
	}
}

func TestReadErrors(t *testing.T) {
	for _, c := range readErrorCases() {
		t.Run(c.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(c.file), int64(len(c.file)))
			if err == nil {
				t.Fatalf("Read accepted the file: %d tensors", len(f.Tensors))
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "safetensors: ") {
				t.Errorf("error %q does not start with \"safetensors: \"", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not an *Error", err)
			}
		})
	}
}

// failingReader fails every read at or past off.
type failingReader struct {
	r   io.ReaderAt
	off int64
	err error
}

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.off {
		return 0, f.err
	}
	return f.r.ReadAt(p, off)
}

func TestReadIOErrors(t *testing.T) {
	b := mustWrite(t, sampleTensors(), nil)
	boom := errors.New("disk on fire")
	hdrLen := int64(binary.LittleEndian.Uint64(b))
	for _, off := range []int64{0, 8, 8 + hdrLen} {
		_, err := Read(failingReader{bytes.NewReader(b), off, boom}, int64(len(b)))
		if !errors.Is(err, boom) {
			t.Errorf("failing at %d: error %v, want it to wrap %v", off, err, boom)
		}
	}
	// A size larger than what the reader holds: the data read comes up short.
	_, err := Read(bytes.NewReader(b[:len(b)-1]), int64(len(b)))
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "reading") {
		t.Errorf("truncated reader: error %v, want unexpected EOF", err)
	}
	// A negative size is just too short.
	if _, err := Read(bytes.NewReader(b), -1); err == nil || !strings.Contains(err.Error(), "shorter than") {
		t.Errorf("negative size: error %v", err)
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.safetensors")
	if err := os.WriteFile(path, rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path)
	want := path + `: tensor "a": data_offsets [0, 8] span 8 bytes, but F32 [3] needs 12`
	if err == nil || err.Error() != want {
		t.Errorf("ReadFile error\n%v\nwant\n%v", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Path != path {
		t.Errorf("error %#v: want an *Error with Path %s", err, path)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v, want not exist", err)
	}
}

func TestWriteErrors(t *testing.T) {
	cases := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
		want    string
	}{
		{"f32 length", []Tensor{F32("w", []int{2, 3}, make([]float32, 5))}, nil,
			`tensor "w": shape [2 3] holds 6 values, data has 5`},
		{"data length", []Tensor{{Name: "x", DType: "I64", Shape: []int{2}, Data: make([]byte, 15)}}, nil,
			`tensor "x": I64 [2] needs 16 bytes, data has 15`},
		{"unknown dtype", []Tensor{{Name: "x", DType: "f32", Shape: []int{1}, Data: make([]byte, 4)}}, nil,
			`tensor "x": unknown dtype "f32"`},
		{"negative dim", []Tensor{{Name: "x", DType: "U8", Shape: []int{-1}}}, nil,
			`tensor "x": shape[0] is -1: a dimension cannot be negative`},
		{"duplicate", []Tensor{F32("a", nil, []float32{1}), F32("a", nil, []float32{2})}, nil,
			`duplicate tensor "a"`},
		{"reserved name", []Tensor{F32(metadataKey, nil, []float32{1})}, nil,
			`tensor 0: the name "__metadata__" is reserved for metadata`},
		{"bad utf8 name", []Tensor{F32("a", nil, []float32{1}), F32("\xff", nil, []float32{1})}, nil,
			`tensor 1: name "\xff" is not valid UTF-8`},
		{"bad utf8 metadata", nil, map[string]string{"k": "\xfe"}, `metadata "k": key or value is not valid UTF-8`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, c.tensors, c.meta)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, c.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Write wrote %d bytes before failing validation", buf.Len())
			}
		})
	}
}

// failingWriter accepts n bytes, then fails.
type failingWriter struct {
	n   int
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteWriterErrors(t *testing.T) {
	tensors := []Tensor{F32("a", []int{10000}, make([]float32, 10000)), F32("b", []int{4}, make([]float32, 4))}
	total := len(mustWrite(t, tensors, nil))
	boom := errors.New("disk full")
	for _, n := range []int{0, 7, 8, 100, total - 16, total - 1} {
		err := Write(&failingWriter{n: n, err: boom}, tensors, nil)
		if !errors.Is(err, boom) {
			t.Errorf("writer failing after %d bytes: error %v, want it to wrap %v", n, err, boom)
		}
	}
	if err := Write(&failingWriter{n: total}, tensors, nil); err != nil {
		t.Errorf("writer with room for the whole file: %v", err)
	}
}

// listDir returns the names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	if err := WriteFile(path, []Tensor{F32("w", []int{3}, []float32{1, 2, 3})}, nil); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	intact := func(what string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, old) {
			t.Errorf("%s: the old file changed (%v)", what, err)
		}
		if names := listDir(t, dir); !slices.Equal(names, []string{"ckpt.safetensors"}) {
			t.Errorf("%s: directory holds %q, want only the old file", what, names)
		}
	}

	// An invalid tensor: an error naming the file, nothing changed.
	err = WriteFile(path, []Tensor{F32("w", []int{4}, []float32{1, 2, 3})}, nil)
	if want := path + `: tensor "w": shape [4] holds 4 values, data has 3`; err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
	intact("invalid tensor")

	// A write that fails halfway, after more than the buffer's worth has
	// reached the temporary file.
	boom := errors.New("interrupted")
	err = writeAtomic(path, func(w io.Writer) error {
		if _, err := w.Write(make([]byte, 200<<10)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
	intact("failing writer")

	// The rename fails (the target is a non-empty directory): the
	// temporary file is removed.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(sub, nil, nil); err == nil {
		t.Error("WriteFile over a directory succeeded")
	}
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	intact("rename failure")

	// A directory that does not exist: an error, nothing created.
	if err := WriteFile(filepath.Join(dir, "nope", "w.safetensors"), nil, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: error %v", err)
	}
	intact("missing directory")

	// A successful write replaces the file and keeps its permissions.
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := []Tensor{F32("w", []int{2}, []float32{4, 5}), F32("v", nil, []float32{6})}
	if err := WriteFile(path, want, nil); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTensors(f.Tensors, want); d != "" {
		t.Error(d)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"ckpt.safetensors"}) {
		t.Errorf("directory holds %q after a successful write", names)
	}
	if fi, err := os.Stat(path); runtime.GOOS != "windows" && (err != nil || fi.Mode().Perm() != 0o600) {
		t.Errorf("mode after replace: %v, %v; want 0600 kept", fi.Mode().Perm(), err)
	}

	// A bare file name writes to the current directory.
	t.Chdir(dir)
	if err := WriteFile("rel.safetensors", want, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile("rel.safetensors"); err != nil {
		t.Fatal(err)
	}
}

// TestWriteStreams checks that writing float32 weights does not build a
// copy of them: a 4 MB tensor is written with far less than 4 MB of
// allocation.
func TestWriteStreams(t *testing.T) {
	data := make([]float32, 1<<20)
	for i := range data {
		data[i] = float32(i)
	}
	tensors := []Tensor{F32("big", []int{1 << 10, 1 << 10}, data)}
	var cw countingWriter
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := Write(&cw, tensors, nil); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if cw.n != 8+72+4<<20 {
		t.Errorf("wrote %d bytes, want %d", cw.n, 8+72+4<<20)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<10 {
		t.Errorf("Write allocated %d bytes for a 4 MB tensor, want under 512 KB", alloc)
	}
}

type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

func TestFloat32sErrors(t *testing.T) {
	cases := []struct {
		t    Tensor
		dst  int
		want string
	}{
		{Tensor{Name: "i", DType: "I32", Shape: []int{1}, Data: make([]byte, 4)}, 1, `tensor "i": dtype is I32, want F32`},
		{F32("a", []int{2, 2}, make([]float32, 4)), 3, `tensor "a": shape [2 2] holds 4 values, destination holds 3`},
		{F32("a", []int{2}, make([]float32, 3)), 2, `tensor "a": shape [2] holds 2 values, data has 3`},
		{Tensor{Name: "d", DType: "F32", Shape: []int{2}, Data: make([]byte, 7)}, 2, `tensor "d": shape [2] of F32 needs 8 bytes, data has 7`},
		{Tensor{Name: "n", DType: "F32", Shape: []int{-2}}, 0, `tensor "n": shape[0] is -2: a dimension cannot be negative`},
	}
	for _, c := range cases {
		err := c.t.Float32s(make([]float32, c.dst))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Float32s: error %v\nwant it to contain %q", err, c.want)
		}
	}
}
