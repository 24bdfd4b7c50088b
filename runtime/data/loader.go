package data

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ChannelStats returns the mean and standard deviation of each channel over
// every pixel of every image of s, on the 0-255 scale: the Mean and Std of
// LoaderOptions. The sums are exact integers, so the result does not depend
// on the order of the images.
func ChannelStats(s *Set) (mean, std []float32) {
	mean, std = make([]float32, s.C), make([]float32, s.C)
	hw := s.H * s.W
	count := float64(s.N) * float64(hw)
	if count == 0 {
		for c := range std {
			std[c] = 1
		}
		return mean, std
	}
	for c := range s.C {
		var sum, sq uint64
		for i := range s.N {
			for _, v := range s.Images[(i*s.C+c)*hw : (i*s.C+c+1)*hw] {
				sum += uint64(v)
				sq += uint64(v) * uint64(v)
			}
		}
		m := float64(sum) / count
		mean[c] = float32(m)
		std[c] = float32(math.Sqrt(max(float64(sq)/count-m*m, 0)))
	}
	return mean, std
}

// LoaderOptions configures a Loader: the batch size, the order and the
// augmentation of the training stream (the CIFAR recipe of He et al.: pad
// by 4, crop 32x32 at random, flip at random, normalize per channel).
type LoaderOptions struct {
	Batch   int
	Seed    uint64
	Shuffle bool // a new permutation of the set each epoch
	// Pad pads by Pad pixels (zeros after normalization, i.e. the mean) and
	// crops randomly back to HxW; 0 = none.
	Pad       int
	Flip      bool      // random horizontal flip with probability 1/2
	Mean, Std []float32 // x = (pixel - mean[c]) / std[c]; nil = 0 and 1
	Workers   int       // goroutines preparing batches ahead (default 2); must not change results
	Ahead     int       // batches prepared ahead (default 2 per worker)
}

// Loader makes the batches of the training stream of a Set.
type Loader struct {
	set  *Set
	opts LoaderOptions
	lut  []float32 // lut[c*256+v] = (v - mean[c]) / std[c]

	permMu sync.Mutex
	perms  []epochPerm // the most recently used epoch permutations

	pipe   *pipeline
	nextK  int64        // the batch Next returns next
	waited atomic.Int64 // nanoseconds Next waited
}

type epochPerm struct {
	epoch int64
	perm  []int32
}

// permsKept is how many epoch permutations a Loader keeps: enough for the
// workers' batches around an epoch boundary.
const permsKept = 4

// NewLoader returns a Loader over s, checking s and the options.
func NewLoader(s *Set, opts LoaderOptions) (*Loader, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.N == 0 {
		return nil, fmt.Errorf("data: %s is empty", s.Name)
	}
	if opts.Batch < 1 {
		return nil, fmt.Errorf("data: batch size %d, want at least 1", opts.Batch)
	}
	if opts.Pad < 0 || opts.Pad > s.H || opts.Pad > s.W {
		return nil, fmt.Errorf("data: pad %d, want 0 to %d", opts.Pad, min(s.H, s.W))
	}
	if opts.Workers < 0 || opts.Ahead < 0 {
		return nil, fmt.Errorf("data: %d workers and %d batches ahead, want at least 0 (0 = default)", opts.Workers, opts.Ahead)
	}
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	if opts.Ahead == 0 {
		opts.Ahead = 2 * opts.Workers
	}
	lut, err := normTable(s.C, opts.Mean, opts.Std)
	if err != nil {
		return nil, err
	}
	return &Loader{set: s, opts: opts, lut: lut}, nil
}

// normTable returns the normalized value of every byte in every channel,
// so that normalizing a pixel is one load.
func normTable(channels int, mean, std []float32) ([]float32, error) {
	if mean != nil && len(mean) != channels || std != nil && len(std) != channels {
		return nil, fmt.Errorf("data: %d means and %d standard deviations for %d channels", len(mean), len(std), channels)
	}
	lut := make([]float32, 256*channels)
	for c := range channels {
		m, sd := 0.0, 1.0
		if mean != nil {
			m = float64(mean[c])
		}
		if std != nil {
			sd = float64(std[c])
		}
		if math.IsNaN(m) || math.IsInf(m, 0) || !(sd > 0) || math.IsInf(sd, 0) {
			return nil, fmt.Errorf("data: channel %d: mean %g and std %g, want finite and std > 0", c, m, sd)
		}
		for v := range 256 {
			lut[c*256+v] = float32((float64(v) - m) / sd)
		}
	}
	return lut, nil
}

// Options returns the options in effect, defaults filled in.
func (l *Loader) Options() LoaderOptions { return l.opts }

// BatchesPerEpoch returns N / Batch rounded up: the batches it takes to see
// every image at least once.
func (l *Loader) BatchesPerEpoch() int64 {
	return (int64(l.set.N) + int64(l.opts.Batch) - 1) / int64(l.opts.Batch)
}

// perm returns the order of the set in epoch e.
func (l *Loader) perm(e int64) []int32 {
	l.permMu.Lock()
	defer l.permMu.Unlock()
	for i, p := range l.perms {
		if p.epoch == e {
			copy(l.perms[1:i+1], l.perms[:i])
			l.perms[0] = p
			return p.perm
		}
	}
	p := permutation(newRNG(hash(l.opts.Seed, domainPerm, uint64(e), 0)), l.set.N)
	if len(l.perms) < permsKept {
		l.perms = append(l.perms, epochPerm{})
	}
	copy(l.perms[1:], l.perms)
	l.perms[0] = epochPerm{e, p}
	return p
}

// augment returns the crop offsets (in [0, 2*Pad]) and flip of the image at
// position j of batch k.
func (l *Loader) augment(k int64, j int) (dy, dx int, flip bool) {
	h := hash(l.opts.Seed, domainAugment, uint64(k), uint64(j))
	if p := l.opts.Pad; p > 0 {
		span := uint64(2*p + 1)
		dy = int(((h & 0xffffffff) * span) >> 32)
		dx = int((((h >> 32) & 0x7fffffff) * span) >> 31)
	}
	return dy, dx, l.opts.Flip && h>>63 == 1
}

// Batch fills x (Batch*C*H*W) and labels with batch number k of the
// training stream: a pure function of (set, options, k). Epoch e =
// k*Batch / N covers a seeded permutation of the set (positions k*Batch ..
// (k+1)*Batch-1 run through the epoch boundaries, so a batch may span two
// epochs), and each image's crop offset and flip is a function of (seed,
// k, position in batch). So a run resumed at batch k continues bit for
// bit. Batch may be called from several goroutines at once.
func (l *Loader) Batch(k int64, x []float32, labels []int32) {
	s, b := l.set, l.opts.Batch
	size := s.imageSize()
	if k < 0 || len(x) != b*size || len(labels) != b {
		panic(fmt.Sprintf("BUG: Loader.Batch(%d) with %d floats and %d labels, want k >= 0, %d and %d", k, len(x), len(labels), b*size, b))
	}
	n := int64(s.N)
	var perm []int32
	epoch := int64(-1)
	for j := range b {
		pos := k*int64(b) + int64(j)
		img := int(pos % n)
		if l.opts.Shuffle {
			if e := pos / n; e != epoch {
				epoch, perm = e, l.perm(e)
			}
			img = int(perm[img])
		}
		labels[j] = s.Labels[img]
		dy, dx, flip := l.augment(k, j)
		l.fill(x[j*size:(j+1)*size], s.Image(img), dy, dx, flip)
	}
}

// fill writes the normalized crop at (dy, dx) of src padded by Pad,
// flipped horizontally when flip, into dst.
func (l *Loader) fill(dst []float32, src []byte, dy, dx int, flip bool) {
	s, p := l.set, l.opts.Pad
	h, w := s.H, s.W
	// Output column x reads source column x+dx-p (w-1-x+dx-p when flipped);
	// [x0, x1) are the columns whose source is inside the image.
	x0, x1 := max(p-dx, 0), min(w+p-dx, w)
	if flip {
		x0, x1 = max(dx-p, 0), min(w-p+dx, w)
	}
	for c := range s.C {
		lut := l.lut[c*256 : c*256+256 : c*256+256]
		plane := src[c*h*w : (c+1)*h*w]
		for y := range h {
			out := dst[(c*h+y)*w : (c*h+y+1)*w]
			sy := y + dy - p
			if sy < 0 || sy >= h {
				clear(out)
				continue
			}
			row := plane[sy*w : (sy+1)*w]
			clear(out[:x0])
			clear(out[x1:])
			if !flip {
				in := row[x0+dx-p : x1+dx-p]
				o := out[x0:x1]
				for i, v := range in {
					o[i] = lut[v]
				}
			} else {
				for x := x0; x < x1; x++ {
					out[x] = lut[row[w-1-x+dx-p]]
				}
			}
		}
	}
}

// pipeline is the state of a Start: a ring of batch buffers that the
// workers fill in order of k and Next hands out in the same order.
type pipeline struct {
	slots []*slot
	next  int64 // the ring index Next returns next
	held  *slot // the slot Next returned last, in use by the caller
	done  chan struct{}
	wg    sync.WaitGroup
}

type slot struct {
	k      int64
	x      []float32
	labels []int32
	free   chan struct{} // a token when the slot may be refilled
	ready  chan struct{} // a token when the slot holds batch k
}

// Start prepares batches from, from+1, ... in background goroutines; Next
// returns the next in order. A Start while running restarts the stream.
// Start, Next and Close are for one goroutine.
func (l *Loader) Start(from int64) {
	if from < 0 {
		panic(fmt.Sprintf("BUG: Loader.Start(%d)", from))
	}
	l.Close()
	l.nextK = from
	n := l.opts.Ahead + 1 // Ahead prepared while the caller holds one
	size := l.opts.Batch * l.set.imageSize()
	p := &pipeline{slots: make([]*slot, n), done: make(chan struct{})}
	for i := range p.slots {
		p.slots[i] = &slot{
			x: make([]float32, size), labels: make([]int32, l.opts.Batch),
			free: make(chan struct{}, 1), ready: make(chan struct{}, 1),
		}
		p.slots[i].free <- struct{}{}
	}
	jobs := make(chan *slot)
	// The dispatcher hands out the slots in ring order as they come free,
	// each with the next batch number; any idle worker fills it.
	p.wg.Go(func() {
		defer close(jobs)
		for i := int64(0); ; i++ {
			s := p.slots[i%int64(n)]
			select {
			case <-s.free:
			case <-p.done:
				return
			}
			s.k = from + i
			select {
			case jobs <- s:
			case <-p.done:
				return
			}
		}
	})
	for range l.opts.Workers {
		p.wg.Go(func() {
			for s := range jobs {
				l.Batch(s.k, s.x, s.labels)
				s.ready <- struct{}{}
			}
		})
	}
	l.pipe = p
}

// Next returns the next batch after Start, blocking only if it is not ready
// yet. Without a running Start (never started, or closed) it starts one at
// the batch after the last it returned, or at 0. The returned slices are
// valid until the following Next, Start or Close.
func (l *Loader) Next() (k int64, x []float32, labels []int32) {
	if l.pipe == nil {
		l.Start(l.nextK)
	}
	p := l.pipe
	if p.held != nil {
		p.held.free <- struct{}{}
		p.held = nil
	}
	s := p.slots[p.next%int64(len(p.slots))]
	select {
	case <-s.ready:
	default:
		t := time.Now()
		<-s.ready
		l.waited.Add(int64(time.Since(t)))
	}
	p.next++
	p.held = s
	l.nextK = s.k + 1
	return s.k, s.x, s.labels
}

// Close stops the background goroutines of Start and waits for them. The
// Loader can Start again (or Next continue where it was); Batch works
// throughout.
func (l *Loader) Close() {
	if l.pipe == nil {
		return
	}
	close(l.pipe.done)
	l.pipe.wg.Wait()
	l.pipe = nil
}

// Waited reports how long Next waited in total for a batch that was not
// ready (for a "data loading stalls" warning).
func (l *Loader) Waited() time.Duration { return time.Duration(l.waited.Load()) }

// EvalBatches calls fn with the images of s in order, batch by batch,
// normalized with mean and std as in a Loader but not augmented. The last
// batch is padded by repeating its last image (and label); n is the number
// of real images in the batch. fn may keep neither slice; an error from fn
// stops the loop and is returned.
func EvalBatches(s *Set, batch int, mean, std []float32, fn func(x []float32, labels []int32, n int) error) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if batch < 1 {
		return errors.New("data: evaluation batch size must be at least 1")
	}
	lut, err := normTable(s.C, mean, std)
	if err != nil {
		return err
	}
	size := s.imageSize()
	x := make([]float32, batch*size)
	labels := make([]int32, batch)
	for start := 0; start < s.N; start += batch {
		n := min(batch, s.N-start)
		for j := range batch {
			i := start + min(j, n-1)
			labels[j] = s.Labels[i]
			img := s.Image(i)
			out := x[j*size : (j+1)*size]
			hw := s.H * s.W
			for c := range s.C {
				tab := lut[c*256 : c*256+256 : c*256+256]
				o := out[c*hw : (c+1)*hw]
				for t, v := range img[c*hw : (c+1)*hw] {
					o[t] = tab[v]
				}
			}
		}
		if err := fn(x, labels, n); err != nil {
			return err
		}
	}
	return nil
}
