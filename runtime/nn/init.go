package nn

import (
	"hash/fnv"
	"math"
)

// InitKind says how Init fills a tensor.
type InitKind uint8

const (
	InitZeros   InitKind = iota // 0
	InitOnes                    // 1
	InitConst                   // a
	InitNormal                  // normal, mean 0, standard deviation a
	InitUniform                 // uniform on [-a, a]
)

// Init fills dst, the tensor called name, as the compiler's reference
// interpreter initializes it for the same seed: each tensor draws from
// its own splitmix64 generator whose state is splitmix64(seed) XOR the
// FNV-1a hash of its name (so adding a layer changes no other layer's
// values), normal samples by the Box-Muller transform (cosine branch, two
// uniforms per sample), every value rounded to float32.
func Init(dst []float32, name string, seed uint64, kind InitKind, a float64) {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := splitmix{state: mix64(seed) ^ h.Sum64()}
	for i := range dst {
		var v float64
		switch kind {
		case InitOnes:
			v = 1
		case InitConst:
			v = a
		case InitNormal:
			v = a * r.normal()
		case InitUniform:
			v = a * (2*r.float() - 1)
		}
		dst[i] = float32(v)
	}
}

// golden64 is 2^64 divided by the golden ratio, splitmix64's increment.
const golden64 = 0x9E3779B97F4A7C15

// mix64 is the first output of a splitmix64 generator whose state is x.
func mix64(x uint64) uint64 {
	z := x + golden64
	z ^= z >> 30
	z *= 0xBF58476D1CE4E5B9
	z ^= z >> 27
	z *= 0x94D049BB133111EB
	z ^= z >> 31
	return z
}

// splitmix is a splitmix64 generator.
type splitmix struct{ state uint64 }

func (r *splitmix) next() uint64 {
	v := mix64(r.state)
	r.state += golden64
	return v
}

// float returns a uniform float64 in [0, 1) with 53 random bits.
func (r *splitmix) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// normal returns a standard normal sample.
func (r *splitmix) normal() float64 {
	u1 := 1 - r.float()
	u2 := r.float()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
