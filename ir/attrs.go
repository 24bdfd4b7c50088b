package ir

import (
	"fmt"
	"maps"
	"slices"
)

// Attrs are an op's compile-time parameters. A value is an int, a float64,
// a string, a bool or an []int; the op table says which names an op takes,
// their types and their defaults.
type Attrs map[string]any

// Clone returns a copy that shares no slices with a.
func (a Attrs) Clone() Attrs {
	c := maps.Clone(a)
	if c == nil {
		c = Attrs{}
	}
	for k, v := range c {
		if s, ok := v.([]int); ok {
			c[k] = slices.Clone(s)
		}
	}
	return c
}

// Keys returns the attribute names in sorted order.
func (a Attrs) Keys() []string { return slices.Sorted(maps.Keys(a)) }

// Int returns the named int attribute of op, or its default from the op
// table. A missing or mistyped attribute with no default is a bug (Verify
// rejects such ops first).
func (op *Op) Int(name string) int {
	v, ok := op.Attr(name).(int)
	if !ok {
		panic(fmt.Sprintf("BUG: %s: attribute %s is not an int", op, name))
	}
	return v
}

// Float returns the named float attribute of op, or its default.
func (op *Op) Float(name string) float64 {
	switch v := op.Attr(name).(type) {
	case float64:
		return v
	case int:
		return float64(v)
	}
	panic(fmt.Sprintf("BUG: %s: attribute %s is not a float", op, name))
}

// Str returns the named string attribute of op, or its default.
func (op *Op) Str(name string) string {
	v, ok := op.Attr(name).(string)
	if !ok {
		panic(fmt.Sprintf("BUG: %s: attribute %s is not a string", op, name))
	}
	return v
}

// Bool returns the named bool attribute of op, or its default.
func (op *Op) Bool(name string) bool {
	v, ok := op.Attr(name).(bool)
	if !ok {
		panic(fmt.Sprintf("BUG: %s: attribute %s is not a bool", op, name))
	}
	return v
}

// Ints returns the named []int attribute of op, or its default.
func (op *Op) Ints(name string) []int {
	v, ok := op.Attr(name).([]int)
	if !ok {
		panic(fmt.Sprintf("BUG: %s: attribute %s is not an int list", op, name))
	}
	return v
}

// Attr returns the named attribute of op, its default from the op table
// when op does not set it, or nil when it has neither. Unlike the typed
// accessors it never panics, so code that reads unverified graphs (the
// interpreter's initialization) can use it.
func (op *Op) Attr(name string) any {
	if v, ok := op.Attrs[name]; ok {
		return v
	}
	if info := Info(op.Kind); info != nil {
		for _, s := range info.Attrs {
			if s.Name == name {
				return s.Default
			}
		}
	}
	return nil
}

// AttrType is the type of an attribute value.
type AttrType uint8

const (
	AttrInt AttrType = iota + 1
	AttrFloat
	AttrString
	AttrBool
	AttrInts
)

func (t AttrType) String() string {
	return [...]string{"?", "int", "float", "string", "bool", "int list"}[t]
}

func attrTypeOf(v any) AttrType {
	switch v.(type) {
	case int:
		return AttrInt
	case float64:
		return AttrFloat
	case string:
		return AttrString
	case bool:
		return AttrBool
	case []int:
		return AttrInts
	}
	return 0
}

// AttrSpec describes one attribute an op accepts. A nil Default means the
// attribute is required.
type AttrSpec struct {
	Name    string
	Type    AttrType
	Default any
}
