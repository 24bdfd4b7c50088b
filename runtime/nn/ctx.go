package nn

import (
	"fmt"
	"sync"
)

// Task is a piece of parallel work. Run computes the part [lo, hi) of it
// on worker w (0 <= w < Threads), using only worker w's scratch.
type Task interface {
	Run(w, lo, hi int)
}

// Ctx is the execution context of a generated step: a fixed number of
// worker goroutines and one scratch buffer per worker. It is created once
// per model; Parallel allocates nothing, so a step allocates nothing.
// A Ctx is not safe for concurrent use: one step runs at a time.
type Ctx struct {
	threads int
	scratch [][]float32
	wide    [][]float64
	jobs    []chan job
	wg      sync.WaitGroup
	closed  bool
	locals  map[any]any
}

type job struct {
	t      Task
	lo, hi int
}

// NewCtx starts threads-1 worker goroutines (the caller's goroutine is
// worker 0) with scratchFloats float32s and wideFloats float64s of scratch
// each.
func NewCtx(threads, scratchFloats, wideFloats int) (*Ctx, error) {
	if threads < 1 || threads > 1024 {
		return nil, fmt.Errorf("nn: %d threads, want 1 to 1024", threads)
	}
	if scratchFloats < 0 || wideFloats < 0 {
		return nil, fmt.Errorf("nn: negative scratch size")
	}
	c := &Ctx{threads: threads}
	for w := 0; w < threads; w++ {
		c.scratch = append(c.scratch, make([]float32, scratchFloats))
		c.wide = append(c.wide, make([]float64, wideFloats))
	}
	for w := 1; w < threads; w++ {
		ch := make(chan job)
		c.jobs = append(c.jobs, ch)
		go c.worker(w, ch)
	}
	return c, nil
}

func (c *Ctx) worker(w int, ch chan job) {
	for j := range ch {
		j.t.Run(w, j.lo, j.hi)
		c.wg.Done()
	}
}

// Threads is the number of workers.
func (c *Ctx) Threads() int { return c.threads }

// Scratch is worker w's float32 scratch.
func (c *Ctx) Scratch(w int) []float32 { return c.scratch[w] }

// Wide is worker w's float64 scratch, for partial sums.
func (c *Ctx) Wide(w int) []float64 { return c.wide[w] }

// Chunk is the part of [0, n) that worker w of threads takes: contiguous,
// in worker order, sizes differing by at most one.
func Chunk(n, threads, w int) (lo, hi int) {
	return w * n / threads, (w + 1) * n / threads
}

// Parallel runs t over [0, n) split into Threads chunks (Chunk), worker 0
// on the calling goroutine, and returns when every chunk is done. Empty
// chunks are not run.
func (c *Ctx) Parallel(t Task, n int) {
	if c.closed {
		panic("BUG: nn: Parallel on a closed Ctx")
	}
	for w := 1; w < c.threads; w++ {
		if lo, hi := Chunk(n, c.threads, w); lo < hi {
			c.wg.Add(1)
			c.jobs[w-1] <- job{t, lo, hi}
		}
	}
	if lo, hi := Chunk(n, c.threads, 0); lo < hi {
		t.Run(0, lo, hi)
	}
	c.wg.Wait()
}

// Close stops the workers. The Ctx must not be used afterwards.
func (c *Ctx) Close() {
	if c.closed {
		return
	}
	c.closed = true
	for _, ch := range c.jobs {
		close(ch)
	}
}

// local returns the value c keeps under key, made by mk on first use.
// Kernels keep their reusable Task structs here: a Task made per call
// would escape to the workers and allocate, and a step must allocate
// nothing. Keys are comparable constants (a kernel's name); mk should
// capture nothing, so that calling local allocates nothing after the
// first time.
func (c *Ctx) local(key any, mk func() any) any {
	if v, ok := c.locals[key]; ok {
		return v
	}
	if c.locals == nil {
		c.locals = make(map[any]any)
	}
	v := mk()
	c.locals[key] = v
	return v
}
