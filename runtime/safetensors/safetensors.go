package safetensors

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxHeaderLen is the largest header Read accepts, the limit of the
// reference implementation: it keeps a corrupt length field from
// allocating gigabytes before anything is validated.
const MaxHeaderLen = 100_000_000

// metadataKey is the header key of the string metadata; no tensor may have
// this name.
const metadataKey = "__metadata__"

// chunkBytes is the size of the buffer that F32 tensors are encoded
// through when written.
const chunkBytes = 32 << 10

// dtypeSizes maps every fixed-size dtype of the format to its element size
// in bytes. Read accepts all of them so that files from other tools load;
// F32, F64, I32, I64 and U8 are what generated packages write.
var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"U16": 2, "I16": 2, "F16": 2, "BF16": 2,
	"U32": 4, "I32": 4, "F32": 4,
	"U64": 8, "I64": 8, "F64": 8,
}

// Tensor is one named tensor of a file: its dtype ("F32", "F64", "I32",
// "I64", "U8", or another dtype of the format), its shape (empty for a
// scalar) and its little-endian bytes.
//
// A tensor made by F32 refers to the caller's float32 slice instead of
// holding bytes: Data stays nil and the values are encoded when the tensor
// is written, so saving weights costs no copy of them. If Data is set, it
// takes precedence. Tensors returned by Read share one buffer, the file's
// data; Data is capped, so appending to it copies.
type Tensor struct {
	Name  string
	DType string
	Shape []int
	Data  []byte

	f32 []float32
}

// F32 returns a float32 tensor that refers to data (not a copy; the values
// are read when the tensor is written). Write reports an error if
// len(data) does not match shape.
func F32(name string, shape []int, data []float32) Tensor {
	return Tensor{Name: name, DType: "F32", Shape: slices.Clone(shape), f32: data}
}

// lazy reports whether t's values are a float32 slice still to be encoded.
func (t Tensor) lazy() bool { return t.Data == nil && t.f32 != nil }

// byteLen is the number of data bytes t holds.
func (t Tensor) byteLen() int {
	if t.lazy() {
		return 4 * len(t.f32)
	}
	return len(t.Data)
}

// Float32s copies t's values into dst, which must have exactly as many
// elements as t's shape. It fails if t is not F32 or its data does not
// match its shape.
func (t Tensor) Float32s(dst []float32) error {
	if t.DType != "F32" {
		return errorf("tensor %q: dtype is %s, want F32", t.Name, t.DType)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return errorf("tensor %q: %s", t.Name, err)
	}
	if n != len(dst) {
		return errorf("tensor %q: shape %v holds %d values, destination holds %d", t.Name, t.Shape, n, len(dst))
	}
	if t.lazy() {
		if len(t.f32) != n {
			return errorf("tensor %q: shape %v holds %d values, data has %d", t.Name, t.Shape, n, len(t.f32))
		}
		copy(dst, t.f32)
		return nil
	}
	if len(t.Data) != 4*n {
		return errorf("tensor %q: shape %v of F32 needs %d bytes, data has %d", t.Name, t.Shape, 4*n, len(t.Data))
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return nil
}

// File is the content of a safetensors file.
type File struct {
	// Metadata is the "__metadata__" object, nil if the file has none.
	Metadata map[string]string
	// Tensors are in the order of their data in the file.
	Tensors []Tensor

	index map[string]int
}

// Tensor returns the tensor with the given name.
func (f *File) Tensor(name string) (Tensor, bool) {
	if i, ok := f.index[name]; ok && i < len(f.Tensors) && f.Tensors[i].Name == name {
		return f.Tensors[i], true
	}
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Error is a malformed file or an invalid tensor. Its message says where
// (the file, a tensor, a byte of the header counted from 0) and what is
// wrong.
type Error struct {
	Path string // the file, when known (ReadFile, WriteFile)
	Msg  string
	Err  error // the underlying I/O or JSON error, if any
}

// Error returns the message, prefixed with the path or "safetensors".
func (e *Error) Error() string {
	where := e.Path
	if where == "" {
		where = "safetensors"
	}
	if e.Err != nil {
		return where + ": " + e.Msg + ": " + e.Err.Error()
	}
	return where + ": " + e.Msg
}

// Unwrap returns the underlying error, so errors.Is finds an I/O error.
func (e *Error) Unwrap() error { return e.Err }

func errorf(format string, args ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

func wrap(err error, format string, args ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, args...), Err: err}
}

// withPath puts path in front of err's message.
func withPath(err error, path string) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		c := *e
		c.Path = path
		return &c
	}
	return fmt.Errorf("%s: %w", path, err)
}

// numElements is the product of shape's dimensions, failing on a negative
// dimension or overflow (checked in order, as the reference implementation
// does, so both accept the same shapes).
func numElements(shape []int) (int, error) {
	n := 1
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape[%d] is %d: a dimension cannot be negative", i, d)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n = int(lo)
	}
	return n, nil
}

// byteSize is the number of data bytes of a tensor of dtype and shape.
func byteSize(dtype string, shape []int) (int, error) {
	size, ok := dtypeSizes[dtype]
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q (want one of %s)", dtype, knownDTypes())
	}
	n, err := numElements(shape)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt/size {
		return 0, fmt.Errorf("shape %v of %s is too large", shape, dtype)
	}
	return n * size, nil
}

func knownDTypes() string {
	names := make([]string, 0, len(dtypeSizes))
	for k := range dtypeSizes {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Write writes tensors, in the order given, and metadata (nil or empty for
// none) in the safetensors format. The same input gives the same bytes.
// Everything is validated before the first byte is written. Write issues
// one write per tensor (per 32 KB chunk of an F32 tensor), so many small
// tensors want a buffered writer; WriteFile buffers.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, err := header(tensors, metadata)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	if err := writeAll(w, n[:]); err != nil {
		return wrap(err, "writing the header length")
	}
	if err := writeAll(w, hdr); err != nil {
		return wrap(err, "writing the header")
	}
	var buf []byte
	for _, t := range tensors {
		if !t.lazy() {
			if err := writeAll(w, t.Data); err != nil {
				return wrap(err, "writing tensor %q", t.Name)
			}
			continue
		}
		if buf == nil {
			buf = make([]byte, chunkBytes)
		}
		for s := t.f32; len(s) > 0; {
			k := min(len(s), len(buf)/4)
			for i, v := range s[:k] {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			}
			if err := writeAll(w, buf[:4*k]); err != nil {
				return wrap(err, "writing tensor %q", t.Name)
			}
			s = s[k:]
		}
	}
	return nil
}

func writeAll(w io.Writer, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := w.Write(p)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// header validates tensors and metadata and returns the padded JSON
// header: "__metadata__" first with its keys sorted, then the tensors in
// order, each as {"dtype","shape","data_offsets"} like the reference
// implementation writes them.
func header(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var b []byte
	b = append(b, '{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = appendString(b, metadataKey)
		b = append(b, ":{"...)
		for i, k := range keys {
			v := metadata[k]
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, errorf("metadata %q: key or value is not valid UTF-8", k)
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, v)
		}
		b = append(b, '}')
	}
	seen := make(map[string]bool, len(tensors))
	off := 0
	for i, t := range tensors {
		switch {
		case t.Name == metadataKey:
			return nil, errorf("tensor %d: the name %q is reserved for metadata", i, metadataKey)
		case !utf8.ValidString(t.Name):
			return nil, errorf("tensor %d: name %q is not valid UTF-8", i, t.Name)
		case seen[t.Name]:
			return nil, errorf("duplicate tensor %q", t.Name)
		}
		seen[t.Name] = true
		size, err := byteSize(t.DType, t.Shape)
		if err != nil {
			return nil, errorf("tensor %q: %s", t.Name, err)
		}
		if t.byteLen() != size {
			if t.lazy() {
				return nil, errorf("tensor %q: shape %v holds %d values, data has %d", t.Name, t.Shape, size/4, len(t.f32))
			}
			return nil, errorf("tensor %q: %s %v needs %d bytes, data has %d", t.Name, t.DType, t.Shape, size, len(t.Data))
		}
		if off > math.MaxInt-size {
			return nil, errorf("tensor %q: the tensors hold more than %d bytes", t.Name, math.MaxInt)
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendString(b, t.Name)
		b = append(b, `:{"dtype":`...)
		b = appendString(b, t.DType)
		b = append(b, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(d), 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, int64(off), 10)
		b = append(b, ',')
		off += size
		b = strconv.AppendInt(b, int64(off), 10)
		b = append(b, "]}"...)
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	if len(b) > MaxHeaderLen {
		return nil, errorf("header is %d bytes, more than the limit of %d", len(b), MaxHeaderLen)
	}
	return b, nil
}

// appendString appends s (valid UTF-8) as a JSON string, escaping only
// what JSON requires.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\r':
			b = append(b, `\r`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// WriteFile writes tensors and metadata to path atomically: it writes a
// temporary file in the same directory, syncs it and renames it over path,
// so path holds either its old content or the complete new one. On error
// the temporary file is removed. A file that already exists keeps its
// permissions; a new one gets 0644.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	err := writeAtomic(path, func(w io.Writer) error { return Write(w, tensors, metadata) })
	return withPath(err, path)
}

// writeAtomic runs write on a buffered temporary file beside path and
// renames it to path when write, the flush, the sync and the close all
// succeeded.
func writeAtomic(path string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		mode = fi.Mode().Perm()
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename itself durable. Best effort: not every platform
	// can sync a directory, and the new file is in place either way.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadFile reads the safetensors file at path. Errors start with path.
func ReadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	file, err := Read(f, fi.Size())
	if err != nil {
		return nil, withPath(err, path)
	}
	return file, nil
}

// Read reads and validates a safetensors file of size bytes from r. It
// reads the header, validates it completely, then reads the data in one
// call into one buffer that the returned tensors share.
func Read(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, errorf("file is %d bytes, shorter than the 8-byte header length", size)
	}
	var nb [8]byte
	if err := readAt(r, nb[:], 0); err != nil {
		return nil, wrap(err, "reading the header length")
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > MaxHeaderLen {
		return nil, errorf("header length %d exceeds the limit of %d bytes", n, MaxHeaderLen)
	}
	if n > uint64(size-8) {
		return nil, errorf("header length %d exceeds the %d bytes that follow the length field", n, size-8)
	}
	hdr := make([]byte, n)
	if err := readAt(r, hdr, 8); err != nil {
		return nil, wrap(err, "reading the %d-byte header", n)
	}
	dataLen := size - 8 - int64(n)
	if dataLen > math.MaxInt {
		return nil, errorf("data is %d bytes, too large for this platform", dataLen)
	}
	entries, meta, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if err := checkCoverage(entries, dataLen); err != nil {
		return nil, err
	}
	data := make([]byte, dataLen)
	if err := readAt(r, data, 8+int64(n)); err != nil {
		return nil, wrap(err, "reading %d data bytes at offset %d", dataLen, 8+n)
	}
	f := &File{Metadata: meta, Tensors: make([]Tensor, len(entries)), index: make(map[string]int, len(entries))}
	for i, e := range entries {
		f.Tensors[i] = Tensor{Name: e.name, DType: e.dtype, Shape: e.shape, Data: data[e.begin:e.end:e.end]}
		f.index[e.name] = i
	}
	return f, nil
}

// readAt fills p from r at off; a short read is io.ErrUnexpectedEOF.
func readAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// entry is one tensor of a parsed header.
type entry struct {
	name       string
	dtype      string
	shape      []int
	begin, end int64
}

// checkCoverage sorts entries by data offset and checks that they are in
// range and cover the dataLen data bytes exactly, with no gap or overlap
// (the format requires it, and it leaves no unread bytes to hide in).
func checkCoverage(entries []entry, dataLen int64) error {
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.begin, b.begin), cmp.Compare(a.end, b.end), strings.Compare(a.name, b.name))
	})
	var pos int64
	prev := ""
	for i, e := range entries {
		if e.end > dataLen {
			return errorf("tensor %q: data_offsets [%d, %d] run past the end of the %d data bytes", e.name, e.begin, e.end, dataLen)
		}
		after := "at the start of the data"
		if i > 0 {
			after = fmt.Sprintf("after tensor %q", prev)
		}
		if e.begin > pos {
			return errorf("tensor %q: data_offsets [%d, %d] leave data bytes [%d, %d) %s uncovered", e.name, e.begin, e.end, pos, e.begin, after)
		}
		if e.begin < pos {
			return errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q, which ends at %d", e.name, e.begin, e.end, prev, pos)
		}
		pos, prev = e.end, e.name
	}
	if pos != dataLen {
		return errorf("tensors cover %d data bytes but the file has %d: data bytes [%d, %d) are uncovered", pos, dataLen, pos, dataLen)
	}
	return nil
}

// headerParser walks the header's JSON tokens, so that it can reject
// duplicate keys and report positions.
type headerParser struct {
	hdr []byte
	dec *json.Decoder
	pos int64 // where the last token starts, counted from 0
}

// errorf returns an error about the header's last token.
func (p *headerParser) errorf(format string, args ...any) error {
	return errorf("header byte %d: %s", p.pos, fmt.Sprintf(format, args...))
}

// token returns the next JSON token and records where it starts.
func (p *headerParser) token() (json.Token, error) {
	p.pos = p.dec.InputOffset()
	for p.pos < int64(len(p.hdr)) && strings.IndexByte(" \t\r\n,:", p.hdr[p.pos]) >= 0 {
		p.pos++
	}
	tok, err := p.dec.Token()
	if err == io.EOF {
		return nil, p.errorf("header is not valid JSON: it ends early")
	}
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, errorf("header is not valid JSON: header byte %d: %s", se.Offset, se)
		}
		return nil, wrap(err, "header is not valid JSON")
	}
	return tok, nil
}

// open reads the opening delimiter of what.
func (p *headerParser) open(d json.Delim, what string) error {
	tok, err := p.token()
	if err != nil {
		return err
	}
	if tok != d {
		want := "an object"
		if d == '[' {
			want = "an array"
		}
		return p.errorf("%s is %s, want %s", what, describe(tok), want)
	}
	return nil
}

// key reads an object key, or the object's closing brace (ok false).
func (p *headerParser) key() (key string, ok bool, err error) {
	tok, err := p.token()
	if err != nil {
		return "", false, err
	}
	if tok == json.Delim('}') {
		return "", false, nil
	}
	s, isStr := tok.(string)
	if !isStr {
		return "", false, p.errorf("object key is %s", describe(tok))
	}
	return s, true, nil
}

// ints reads an array of integers named what.
func (p *headerParser) ints(what string) ([]int64, error) {
	if err := p.open('[', what); err != nil {
		return nil, err
	}
	out := []int64{}
	for i := 0; ; i++ {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		if tok == json.Delim(']') {
			return out, nil
		}
		num, isNum := tok.(json.Number)
		if !isNum {
			return nil, p.errorf("%s[%d] is %s, want an integer", what, i, describe(tok))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return nil, p.errorf("%s[%d] is %s, out of range", what, i, num)
			}
			return nil, p.errorf("%s[%d] is %s, not an integer", what, i, num)
		}
		out = append(out, v)
	}
}

// describe names a JSON token for an error message.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return "'" + v.String() + "'"
	case string:
		return "the string " + strconv.Quote(v)
	case json.Number:
		return "the number " + string(v)
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// parseHeader parses and validates the JSON header: one object of
// tensors and an optional "__metadata__" object of strings, with no
// duplicate keys at any level.
func parseHeader(hdr []byte) ([]entry, map[string]string, error) {
	if !utf8.Valid(hdr) {
		return nil, nil, errorf("header is not valid UTF-8")
	}
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, nil, errorf("header does not start with '{': it must be a JSON object")
	}
	p := &headerParser{hdr: hdr, dec: json.NewDecoder(bytes.NewReader(hdr))}
	p.dec.UseNumber()
	if err := p.open('{', "header"); err != nil {
		return nil, nil, err
	}
	var (
		entries []entry
		meta    map[string]string
		seen    = map[string]bool{}
	)
	for {
		name, ok, err := p.key()
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			break
		}
		if seen[name] {
			if name == metadataKey {
				return nil, nil, p.errorf("duplicate %q", metadataKey)
			}
			return nil, nil, p.errorf("duplicate tensor %q", name)
		}
		seen[name] = true
		if name == metadataKey {
			if meta, err = p.metadata(); err != nil {
				return nil, nil, err
			}
			continue
		}
		e, err := p.tensor(name)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if tok, err := p.dec.Token(); err != io.EOF {
		return nil, nil, p.errorf("header has more after its JSON object (%s)", describeOrErr(tok, err))
	}
	return entries, meta, nil
}

func describeOrErr(tok json.Token, err error) string {
	if err != nil {
		return err.Error()
	}
	return describe(tok)
}

// metadata reads the "__metadata__" object.
func (p *headerParser) metadata() (map[string]string, error) {
	if err := p.open('{', metadataKey); err != nil {
		return nil, err
	}
	meta := map[string]string{}
	for {
		k, ok, err := p.key()
		if err != nil {
			return nil, err
		}
		if !ok {
			return meta, nil
		}
		if _, dup := meta[k]; dup {
			return nil, p.errorf("duplicate %s key %q", metadataKey, k)
		}
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		v, isStr := tok.(string)
		if !isStr {
			return nil, p.errorf("%s %q is %s, want a string", metadataKey, k, describe(tok))
		}
		meta[k] = v
	}
}

// tensor reads the info object of the tensor called name and checks that
// its offsets span exactly the bytes its dtype and shape need. Unknown
// fields are skipped, as the reference implementation does.
func (p *headerParser) tensor(name string) (entry, error) {
	e := entry{name: name}
	if err := p.open('{', fmt.Sprintf("tensor %q", name)); err != nil {
		return e, err
	}
	var offs []int64
	have := map[string]bool{}
	for {
		k, ok, err := p.key()
		if err != nil {
			return e, err
		}
		if !ok {
			break
		}
		if have[k] {
			return e, p.errorf("tensor %q: duplicate field %q", name, k)
		}
		have[k] = true
		switch k {
		case "dtype":
			tok, err := p.token()
			if err != nil {
				return e, err
			}
			s, isStr := tok.(string)
			if !isStr {
				return e, p.errorf("tensor %q: dtype is %s, want a string", name, describe(tok))
			}
			if _, known := dtypeSizes[s]; !known {
				return e, errorf("tensor %q: unknown dtype %q (want one of %s)", name, s, knownDTypes())
			}
			e.dtype = s
		case "shape":
			dims, err := p.ints("shape")
			if err != nil {
				return e, withTensor(err, name)
			}
			e.shape = make([]int, len(dims))
			for i, d := range dims {
				if d < 0 {
					return e, errorf("tensor %q: shape[%d] is %d: a dimension cannot be negative", name, i, d)
				}
				if d > math.MaxInt {
					return e, errorf("tensor %q: shape[%d] is %d, too large for this platform", name, i, d)
				}
				e.shape[i] = int(d)
			}
		case "data_offsets":
			if offs, err = p.ints("data_offsets"); err != nil {
				return e, withTensor(err, name)
			}
			if len(offs) != 2 {
				return e, errorf("tensor %q: data_offsets has %d values, want 2 (begin and end)", name, len(offs))
			}
			if offs[0] < 0 || offs[1] < 0 {
				return e, errorf("tensor %q: data_offsets %v: offsets cannot be negative", name, offs)
			}
		default:
			var skip json.RawMessage
			if err := p.dec.Decode(&skip); err != nil {
				return e, wrap(err, "tensor %q: field %q is not valid JSON", name, k)
			}
		}
	}
	for _, f := range []string{"dtype", "shape", "data_offsets"} {
		if !have[f] {
			return e, errorf("tensor %q: missing %q", name, f)
		}
	}
	e.begin, e.end = offs[0], offs[1]
	if e.begin > e.end {
		return e, errorf("tensor %q: data_offsets [%d, %d] end before they begin", name, e.begin, e.end)
	}
	size, err := byteSize(e.dtype, e.shape)
	if err != nil {
		return e, errorf("tensor %q: %s", name, err)
	}
	if e.end-e.begin != int64(size) {
		return e, errorf("tensor %q: data_offsets [%d, %d] span %d bytes, but %s %v needs %d", name, e.begin, e.end, e.end-e.begin, e.dtype, e.shape, size)
	}
	return e, nil
}

// withTensor adds the tensor's name to an error about one of its fields.
func withTensor(err error, name string) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		c.Msg = fmt.Sprintf("tensor %q: %s", name, e.Msg)
		return &c
	}
	return err
}
