package data

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// The synthetic dataset: 32x32 RGB images of 10 classes. Class c is a
// sinusoidal grating with one of 5 orientations and one of 2 spatial
// frequencies, inside a soft disc of random size at a random position,
// with random phase and colour, over a random background with a colour
// gradient, pixel noise and often a weaker distractor grating of another
// class. Recognizing a class takes oriented, frequency-selective filters
// and pooling over positions (what the first layers of a ResNet learn),
// while the varying contrast and the distractor keep accuracy below 100%.
//
// An orientation stands for the pair of angles +a and -a (the angle of the
// wave vector from the x axis, drawn with either sign), so a horizontal
// flip, which maps +a to -a, never changes the class.
const (
	synthClasses = 10
	synthSize    = 32
)

// synthAngles are the orientation families in degrees; synthPeriods the
// grating periods in pixels.
var (
	synthAngles  = [5]float64{0, 22.5, 45, 67.5, 90}
	synthPeriods = [2]float64{8.5, 4.5}
)

// synthClass returns the mean orientation (degrees) and period of class c.
func synthClass(c int) (angle, period float64) {
	return synthAngles[c%len(synthAngles)], synthPeriods[c/len(synthAngles)]
}

// SyntheticClassNames names the synthetic classes by grating period and
// orientation.
func SyntheticClassNames() []string {
	names := make([]string, synthClasses)
	for c := range names {
		a, p := synthClass(c)
		kind := "coarse"
		if p < 6 {
			kind = "fine"
		}
		names[c] = fmt.Sprintf("%s-%gdeg", kind, a)
	}
	return names
}

// Synthetic returns procedurally generated training and test sets of
// nTrain and nTest 32x32x3 images of 10 classes (see the comment above
// synthClasses), the same for the same seed. Classes are balanced: their
// counts differ by at most one, in a seeded random order. Negative counts
// are taken as 0.
func Synthetic(seed uint64, nTrain, nTest int) (train, test *Set) {
	return synthSet(seed, 0, max(nTrain, 0)), synthSet(seed, 1, max(nTest, 0))
}

func synthSet(seed uint64, part uint64, n int) *Set {
	name := "synthetic/train"
	if part == 1 {
		name = "synthetic/test"
	}
	s := &Set{
		Name: name, N: n, C: 3, H: synthSize, W: synthSize, Classes: synthClasses,
		ClassNames: SyntheticClassNames(),
		Images:     make([]byte, n*3*synthSize*synthSize),
		Labels:     make([]int32, n),
	}
	for i, p := range permutation(newRNG(hash(seed, domainSynthLabels, part, 0)), n) {
		s.Labels[i] = p % synthClasses
	}
	workers := min(runtime.GOMAXPROCS(0), max(n/256, 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var g synthImage
			for i := w; i < n; i += workers {
				g.draw(newRNG(hash(seed, domainSynthImage, part, uint64(i))), int(s.Labels[i]), s.Image(i))
			}
		})
	}
	wg.Wait()
	return s
}

// synthImage is the scratch of one image in float64, CHW.
type synthImage struct {
	v [3 * synthSize * synthSize]float64
}

// draw renders an image of class c into dst (CHW bytes) from r.
func (g *synthImage) draw(r *rng, c int, dst []byte) {
	const n = synthSize
	// Background: a colour and a linear gradient of it.
	alpha := r.uniform(0, 2*math.Pi)
	gx, gy := math.Cos(alpha)/16, math.Sin(alpha)/16
	for ch := range 3 {
		base := r.uniform(50, 205)
		slope := r.uniform(0, 40)
		p := g.v[ch*n*n : (ch+1)*n*n]
		for y := range n {
			for x := range n {
				p[y*n+x] = base + slope*((float64(x)-15.5)*gx+(float64(y)-15.5)*gy)
			}
		}
	}
	// The class's grating, then perhaps a weaker one of another class.
	g.grating(r, c, r.uniform(9, 23), r.uniform(9, 23), r.uniform(7, 13), r.uniform(20, 80))
	if r.float() < 0.7 {
		other := (c + 1 + r.intn(synthClasses-1)) % synthClasses
		g.grating(r, other, r.uniform(4, 28), r.uniform(4, 28), r.uniform(4, 9), r.uniform(15, 50))
	}
	// Pixel noise of a per-image level, triangular in distribution.
	sigma := r.uniform(6, 30)
	for i, v := range g.v {
		v += sigma * (r.float() + r.float() - 1)
		dst[i] = byte(math.Round(min(max(v, 0), 255)))
	}
}

// grating adds a grating of class c centred at (cx, cy) in a soft disc of
// radius rad, with amplitude amp along a random colour direction.
func (g *synthImage) grating(r *rng, c int, cx, cy, rad, amp float64) {
	const n = synthSize
	angle, period := synthClass(c)
	angle += r.uniform(-5, 5)
	if r.float() < 0.5 {
		angle = -angle
	}
	freq := 2 * math.Pi / (period * r.uniform(0.92, 1.08))
	kx, ky := freq*math.Cos(angle*math.Pi/180), freq*math.Sin(angle*math.Pi/180)
	phase := r.uniform(0, 2*math.Pi)
	var dir [3]float64
	m := 0.0
	for ch := range dir {
		dir[ch] = r.uniform(-1, 1)
		m = max(m, math.Abs(dir[ch]))
	}
	for ch := range dir {
		dir[ch] *= amp / m
	}
	const soft = 1.5
	for y := range n {
		dy := float64(y) - cy
		for x := range n {
			dx := float64(x) - cx
			d := math.Sqrt(dx*dx + dy*dy)
			if d >= rad+soft {
				continue
			}
			w := 1.0
			if d > rad-soft {
				t := (rad + soft - d) / (2 * soft)
				w = t * t * (3 - 2*t)
			}
			s := w * math.Sin(kx*dx+ky*dy+phase)
			for ch := range 3 {
				g.v[ch*n*n+y*n+x] += s * dir[ch]
			}
		}
	}
}
