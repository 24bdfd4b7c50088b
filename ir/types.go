package ir

import (
	"strconv"
	"strings"
)

// DType is the element type of a tensor.
type DType uint8

const (
	F32 DType = iota + 1 // float32: activations, weights, gradients
	I32                  // int32: class labels
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case I32:
		return "i32"
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// Layout is the memory order of a rank-4 tensor. The logical shape is
// always [N, C, H, W]; the layout only says how it is stored.
type Layout uint8

const (
	NCHW   Layout = iota // plain row-major N, C, H, W (the default)
	NCHW8c               // channel blocks of 8: [N, C/8, H, W, 8]
)

func (l Layout) String() string {
	switch l {
	case NCHW:
		return "nchw"
	case NCHW8c:
		return "nchw8c"
	}
	return "layout(" + strconv.Itoa(int(l)) + ")"
}

// Shape is a list of dimensions. Rank-4 shapes are [N, C, H, W]; rank-2
// shapes are [N, C] (or [out, in] for a linear layer's weight); rank-1
// shapes are per-channel vectors; rank 0 is a scalar.
type Shape []int

// Elems returns the number of elements, 1 for a scalar.
func (s Shape) Elems() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether s and t have the same rank and dimensions.
func (s Shape) Equal(t Shape) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range s {
		if s[i] != t[i] {
			return false
		}
	}
	return true
}

func (s Shape) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(d))
	}
	b.WriteByte(']')
	return b.String()
}

// Type is the static type of a Value: element type, shape and layout.
type Type struct {
	DType  DType
	Shape  Shape
	Layout Layout
}

// T32 returns a float32 type in the default layout.
func T32(dims ...int) Type { return Type{DType: F32, Shape: Shape(dims)} }

// Bytes is the storage size of a value of this type.
func (t Type) Bytes() int64 { return int64(t.Shape.Elems()) * 4 }

// Equal reports whether two types are identical.
func (t Type) Equal(u Type) bool {
	return t.DType == u.DType && t.Layout == u.Layout && t.Shape.Equal(u.Shape)
}

// String formats the type as in the text form, e.g. f32[8,16,32,32] or
// f32[8,16,32,32]@nchw8c.
func (t Type) String() string {
	s := t.DType.String() + t.Shape.String()
	if t.Layout != NCHW {
		s += "@" + t.Layout.String()
	}
	return s
}
