package nn

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
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
//
// A step is a long run of short parallel ops (at batch 1, a convolution
// takes tens of microseconds), so the hand-off must cost less than
// waking a parked goroutine, which takes a futex call on each side and
// several microseconds. A goroutine that waits, a worker for the next
// task or the caller for the workers to finish, first spins on an atomic
// counter for up to spinFor, and parks only after that. It spins only
// when every worker can have a core of its own (threads <= GOMAXPROCS).
type Ctx struct {
	threads int
	scratch [][]float32
	wide    [][]float64
	spin    time.Duration

	// The posted task and its size, written by the caller before it
	// advances seq and read by the workers after they see seq advance.
	task    Task
	n       int
	seq     atomic.Uint64 // tasks posted (the last advance, Close's, posts nil)
	pending atomic.Int32  // workers that have not finished the posted task
	workers []waiter      // workers 1 to threads-1
	caller  waiter        // the caller, waiting for pending to reach 0
	closed  bool
	locals  map[any]any
}

// testHookDone, when set before NewCtx, runs in the worker that finished
// a task last, between its decrement of pending and its wake-up of the
// caller: tests widen that window with it.
var testHookDone func()

// spinFor is how long a waiting goroutine spins before it parks: longer
// than the gaps between the parallel ops of a step, far shorter than the
// time between steps.
const spinFor = 50 * time.Microsecond

// waiter is a goroutine that may park: it sets parked, checks once more
// for what it waits for, and blocks on wake. Whoever makes the condition
// true clears parked and, if it was set, sends on wake (buffered), so a
// wake-up is never lost and never left behind.
type waiter struct {
	parked atomic.Bool
	wake   chan struct{}
}

// unpark wakes the waiter if it parked.
func (w *waiter) unpark() {
	if w.parked.CompareAndSwap(true, false) {
		w.wake <- struct{}{}
	}
}

// cancel undoes a park whose condition turned out true: if a waker
// already claimed the wake-up, its send must be received.
func (w *waiter) cancel() {
	if !w.parked.CompareAndSwap(true, false) {
		<-w.wake
	}
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
	c := &Ctx{threads: threads, workers: make([]waiter, threads-1), caller: waiter{wake: make(chan struct{}, 1)}}
	if threads <= runtime.GOMAXPROCS(0) {
		c.spin = spinFor
	}
	for w := 0; w < threads; w++ {
		c.scratch = append(c.scratch, make([]float32, scratchFloats))
		c.wide = append(c.wide, make([]float64, wideFloats))
	}
	for w := 1; w < threads; w++ {
		c.workers[w-1].wake = make(chan struct{}, 1)
		go c.worker(w)
	}
	return c, nil
}

func (c *Ctx) worker(w int) {
	me := &c.workers[w-1]
	var seen uint64
	for {
		seen = c.awaitPost(me, seen)
		t := c.task
		if t == nil {
			return
		}
		if lo, hi := Chunk(c.n, c.threads, w); lo < hi {
			t.Run(w, lo, hi)
		}
		if c.pending.Add(-1) == 0 {
			if testHookDone != nil {
				testHookDone()
			}
			c.caller.unpark()
		}
	}
}

// awaitPost waits until seq differs from seen and returns it.
func (c *Ctx) awaitPost(me *waiter, seen uint64) uint64 {
	start := time.Now()
	for i := 1; ; i++ {
		if s := c.seq.Load(); s != seen {
			return s
		}
		if i%256 == 0 && time.Since(start) >= c.spin {
			break
		}
	}
	for {
		me.parked.Store(true)
		if s := c.seq.Load(); s != seen {
			me.cancel()
			return s
		}
		<-me.wake
		if s := c.seq.Load(); s != seen {
			return s
		}
	}
}

// awaitWorkers waits until every worker finished the posted task.
func (c *Ctx) awaitWorkers() {
	start := time.Now()
	for i := 1; ; i++ {
		if c.pending.Load() == 0 {
			return
		}
		if i%256 == 0 && time.Since(start) >= c.spin {
			break
		}
	}
	// A wake-up may be stale: the last worker of the previous task
	// decrements pending before it unparks the caller, and may do so
	// only now. So the condition is checked again after each.
	for {
		c.caller.parked.Store(true)
		if c.pending.Load() == 0 {
			c.caller.cancel()
			return
		}
		<-c.caller.wake
		if c.pending.Load() == 0 {
			return
		}
	}
}

// post hands t to every worker.
func (c *Ctx) post(t Task, n int) {
	c.task, c.n = t, n
	c.pending.Store(int32(c.threads - 1))
	c.seq.Add(1)
	for i := range c.workers {
		c.workers[i].unpark()
	}
}

// Parallel runs t over [0, n) split into Threads chunks (Chunk), worker 0
// on the calling goroutine, and returns when every chunk is done. Empty
// chunks are not run.
func (c *Ctx) Parallel(t Task, n int) {
	if c.closed {
		panic("BUG: nn: Parallel on a closed Ctx")
	}
	if c.threads > 1 {
		c.post(t, n)
	}
	if lo, hi := Chunk(n, c.threads, 0); lo < hi {
		t.Run(0, lo, hi)
	}
	if c.threads > 1 {
		c.awaitWorkers()
	}
}

// Close stops the workers. The Ctx must not be used afterwards.
func (c *Ctx) Close() {
	if c.closed {
		return
	}
	c.closed = true
	c.post(nil, 0)
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
