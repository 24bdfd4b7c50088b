package data

import "math/bits"

// The random numbers of this package come from splitmix64 (Steele, Lea and
// Flood 2014) rather than math/rand: its output is fixed by this file, so
// batches and synthetic images stay the same across Go releases, and a
// value can be derived from a key (seed, batch, position) without a stream.

const golden64 = 0x9e3779b97f4a7c15

// mix64 is the splitmix64 finalizer: a bijection of uint64 whose outputs
// for nearby inputs look independent.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Domains keep the hashes of different uses of one seed apart.
const (
	domainPerm uint64 = iota + 1
	domainAugment
	domainSynthLabels
	domainSynthImage
)

// hash derives a 64-bit value from a seed, a domain and two keys.
func hash(seed, domain, a, b uint64) uint64 {
	h := mix64(seed + golden64*domain)
	h = mix64(h ^ mix64(a+golden64))
	return mix64(h ^ mix64(b+0x632be59bd9b4e019))
}

// rng is a splitmix64 stream.
type rng struct{ s uint64 }

func newRNG(seed uint64) *rng { return &rng{s: seed} }

func (r *rng) next() uint64 {
	r.s += golden64
	return mix64(r.s)
}

// intn returns a uniform value in [0, n) for n > 0, without modulo bias
// (Lemire's multiply-and-reject method).
func (r *rng) intn(n int) int {
	if n <= 0 {
		panic("BUG: rng.intn with n <= 0")
	}
	bound := uint64(n)
	for {
		hi, lo := bits.Mul64(r.next(), bound)
		if lo >= bound || lo >= -bound%bound {
			return int(hi)
		}
	}
}

// float returns a uniform value in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) * (1.0 / (1 << 53)) }

// uniform returns a uniform value in [lo, hi).
func (r *rng) uniform(lo, hi float64) float64 { return lo + (hi-lo)*r.float() }

// permutation returns a uniformly random permutation of [0, n) drawn from r
// (Fisher-Yates).
func permutation(r *rng, n int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
