package codegen

import "strings"

// weightsIOSource is the weights and checkpoint I/O of every generated
// package, in the safetensors format: one tensor per param and state,
// under the names of the architecture ("s1.u2.conv1.weight"), so that
// other tools read them, and the network, its architecture and the step
// count in the header.
const weightsIOSource = `package PKG

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strconv"

	"github.com/resnetc/resnetc/runtime/safetensors"
)

// Metadata keys of the files Save writes.
const (
	MetaFormat  = "format"  // "resnetc"
	MetaNetwork = "network" // Name
	MetaArch    = "arch"    // Arch, the architecture in the DSL
	MetaBatch   = "batch"   // Batch
	MetaStep    = "step"    // the steps taken
	MetaCRC     = "crc32c"  // CRC-32C of every tensor's bytes, in table order
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// storageCRC is the CRC-32C of the model's tensors as Save writes them:
// little-endian float32s, in table order.
func (m *Model) storageCRC() uint32 {
	var crc uint32
	var buf [4096]byte
	for i := range tensors {
		v := m.storage(&tensors[i])
		for len(v) > 0 {
			n := min(len(v), len(buf)/4)
			for j, x := range v[:n] {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
			}
			crc = crc32.Update(crc, castagnoli, buf[:4*n])
			v = v[n:]
		}
	}
	return crc
}

// Save writes every param and state tensor (the weights, SGD's momentum
// and the BatchNorm running statistics) to path in the safetensors format,
// atomically: an interrupted save leaves the previous file intact. extra
// metadata (training state, say) is stored beside the network's own;
// its keys must not be those of the Meta constants.
func (m *Model) Save(path string, extra map[string]string) error {
	meta := map[string]string{
		MetaFormat:  "resnetc",
		MetaNetwork: Name,
		MetaArch:    Arch,
		MetaBatch:   strconv.Itoa(Batch),
		MetaStep:    strconv.FormatInt(m.step, 10),
		MetaCRC:     fmt.Sprintf("%08x", m.storageCRC()),
	}
	for k, v := range extra {
		if _, ok := meta[k]; ok {
			return fmt.Errorf("save %s: metadata key %q is reserved", path, k)
		}
		meta[k] = v
	}
	ts := make([]safetensors.Tensor, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		ts[i] = safetensors.F32(t.name, t.shape, m.storage(t))
	}
	return safetensors.WriteFile(path, ts, meta)
}

// Load reads a file written by Save (or any safetensors file with exactly
// this network's tensors, by name, shape and dtype) into the model and
// returns its metadata; the step count is restored from it when present.
// The file is checked whole before anything is copied: on an error the
// model is unchanged.
func (m *Model) Load(path string) (map[string]string, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if n, ok := f.Metadata[MetaNetwork]; ok && n != Name {
		return nil, fmt.Errorf("%s: a checkpoint of network %q, not %q", path, n, Name)
	}
	if a, ok := f.Metadata[MetaArch]; ok && a != Arch {
		return nil, fmt.Errorf("%s: the checkpoint's architecture differs from this network's:\n%s", path, a)
	}
	step := m.step
	if s, ok := f.Metadata[MetaStep]; ok {
		if step, err = strconv.ParseInt(s, 10, 64); err != nil || step < 0 {
			return nil, fmt.Errorf("%s: metadata %s = %q is not a step count", path, MetaStep, s)
		}
	}
	if len(f.Tensors) != len(tensors) {
		for _, ft := range f.Tensors {
			if m.Tensor(ft.Name) == nil {
				return nil, fmt.Errorf("%s: tensor %q is not one of network %s's", path, ft.Name, Name)
			}
		}
	}
	found := make([]safetensors.Tensor, len(tensors))
	var crc uint32
	for i := range tensors {
		t := &tensors[i]
		ft, ok := f.Tensor(t.name)
		if !ok {
			return nil, fmt.Errorf("%s: no tensor %q (is it a checkpoint of %s?)", path, t.name, Name)
		}
		if ft.DType != "F32" || !slices.Equal(ft.Shape, t.shape) {
			return nil, fmt.Errorf("%s: tensor %q is %s %v, want F32 %v", path, t.name, ft.DType, ft.Shape, t.shape)
		}
		found[i] = ft
		crc = crc32.Update(crc, castagnoli, ft.Data)
	}
	if want, ok := f.Metadata[MetaCRC]; ok && want != fmt.Sprintf("%08x", crc) {
		return nil, fmt.Errorf("%s: the tensor data is corrupted: its CRC-32C is %08x, the header says %s", path, crc, want)
	}
	m.refold = true
	for i := range tensors {
		if err := found[i].Float32s(m.storage(&tensors[i])); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	m.step = step
	return f.Metadata, nil
}
`

// weightsIOFile returns the weights I/O source for package pkg.
func weightsIOFile(pkg string) []byte {
	return []byte(strings.Replace(weightsIOSource, "package PKG", header+"\n\npackage "+pkg, 1))
}
