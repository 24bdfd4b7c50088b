package nn

import (
	"math"
	"testing"
)

// TestInit checks Init's distributions and its independence from other
// tensors: the mean and spread of normal and uniform draws, constants, and
// that the values depend on the name and seed.
func TestInit(t *testing.T) {
	const n = 1 << 16
	a, b := make([]float32, n), make([]float32, n)
	Init(a, "s1.u1.conv1.weight", 1, InitNormal, 0.5)
	var sum, sq float64
	for _, v := range a {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean, std := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
	if math.Abs(mean) > 0.01 || math.Abs(std-0.5) > 0.01 {
		t.Errorf("normal(0.5): mean %v, std %v", mean, std)
	}
	Init(b, "s1.u1.conv1.weight", 1, InitNormal, 0.5)
	if a[0] != b[0] || a[n-1] != b[n-1] {
		t.Errorf("same name and seed give different values")
	}
	Init(b, "s1.u1.conv2.weight", 1, InitNormal, 0.5)
	if a[0] == b[0] {
		t.Errorf("another name gives the same first value")
	}
	Init(b, "s1.u1.conv1.weight", 2, InitNormal, 0.5)
	if a[0] == b[0] {
		t.Errorf("another seed gives the same first value")
	}
	Init(a, "fc", 1, InitUniform, 0.25)
	lo, hi := a[0], a[0]
	for _, v := range a {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo < -0.25 || hi > 0.25 || lo > -0.24 || hi < 0.24 {
		t.Errorf("uniform(0.25): range [%v, %v]", lo, hi)
	}
	for _, c := range []struct {
		kind InitKind
		a    float64
		want float32
	}{{InitZeros, 3, 0}, {InitOnes, 3, 1}, {InitConst, -6, -6}} {
		Init(a[:4], "x", 1, c.kind, c.a)
		for _, v := range a[:4] {
			if v != c.want {
				t.Errorf("kind %d: %v, want %v", c.kind, v, c.want)
			}
		}
	}
}
