package safetensors

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzRead checks that Read never panics, fails only with an *Error, and
// that whatever it accepts is consistent (each tensor's data matches its
// dtype and shape) and survives a round trip: writing the tensors and
// metadata and reading them back gives the same, and writing that again
// gives the same bytes.
func FuzzRead(f *testing.F) {
	f.Add(mustWrite(f, sampleTensors(), map[string]string{"format": "pt", "k": "v"}))
	f.Add(mustWrite(f, nil, nil))
	f.Add(rawFile(`{"e":{"shape":[0,3],"dtype":"F64","data_offsets":[9,9]},"w":{"data_offsets":[1,9],"x":[{}],"shape":[2],"dtype":"F32"},"s":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}`,
		[]byte{42, 0, 0, 0, 0x3f, 0, 0, 0x40, 0x40}))
	f.Add(rawFile(`{"\u00e9\ud800\n":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"__metadata__":{"\"":"\\"}}`, []byte{1, 2}))
	for _, c := range readErrorCases() {
		f.Add(c.file)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is a %T, not an *Error", err, err)
			}
			return
		}
		for _, tn := range file.Tensors {
			size, err := byteSize(tn.DType, tn.Shape)
			if err != nil || size != len(tn.Data) {
				t.Fatalf("accepted tensor %q: %s %v with %d bytes (%v)", tn.Name, tn.DType, tn.Shape, len(tn.Data), err)
			}
		}
		var buf bytes.Buffer
		if err := Write(&buf, file.Tensors, file.Metadata); err != nil {
			t.Fatalf("Write of what Read accepted: %v", err)
		}
		again, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("Read of what Write wrote: %v\n%q", err, buf.Bytes())
		}
		if d := diffTensors(again.Tensors, file.Tensors); d != "" {
			t.Fatalf("round trip: %s", d)
		}
		if !sameMetadata(again.Metadata, file.Metadata) {
			t.Fatalf("round trip: metadata %v, want %v", again.Metadata, file.Metadata)
		}
		var buf2 bytes.Buffer
		if err := Write(&buf2, again.Tensors, again.Metadata); err != nil || !bytes.Equal(buf2.Bytes(), buf.Bytes()) {
			t.Fatalf("writing the re-read file gave different bytes (%v)", err)
		}
	})
}
