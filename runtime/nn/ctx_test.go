package nn

import (
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/resnetc/resnetc/internal/golden"
)

type countTask struct {
	hits  []atomic.Int32
	owner []int32
}

func (t *countTask) Run(w, lo, hi int) {
	for i := lo; i < hi; i++ {
		t.hits[i].Add(1)
		t.owner[i] = int32(w)
	}
}

// TestParallel checks that every index is run exactly once, by the
// worker Chunk assigns it to, for thread counts above and below n.
func TestParallel(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		c, err := NewCtx(threads, 4, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 2, 7, 100} {
			task := &countTask{hits: make([]atomic.Int32, n), owner: make([]int32, n)}
			c.Parallel(task, n)
			for w := 0; w < threads; w++ {
				lo, hi := Chunk(n, threads, w)
				for i := lo; i < hi; i++ {
					if task.hits[i].Load() != 1 || task.owner[i] != int32(w) {
						t.Errorf("threads %d, n %d: index %d run %d times, by worker %d; want once by %d", threads, n, i, task.hits[i].Load(), task.owner[i], w)
					}
				}
			}
		}
		if len(c.Scratch(threads-1)) != 4 || len(c.Wide(0)) != 2 {
			t.Errorf("scratch sizes %d, %d", len(c.Scratch(threads-1)), len(c.Wide(0)))
		}
		// Waits longer than spinFor park the workers and the caller.
		for k := 0; k < 20; k++ {
			task := &countTask{hits: make([]atomic.Int32, 5), owner: make([]int32, 5)}
			c.Parallel(task, 5)
			for i := range task.hits {
				if task.hits[i].Load() != 1 {
					t.Fatalf("threads %d, after a pause: index %d run %d times", threads, i, task.hits[i].Load())
				}
			}
			time.Sleep(time.Duration(k%3) * spinFor)
		}
		task := &countTask{hits: make([]atomic.Int32, 64), owner: make([]int32, 64)}
		if a := testing.AllocsPerRun(20, func() { c.Parallel(task, 64) }); a != 0 {
			t.Errorf("threads %d: Parallel allocates %v times per call", threads, a)
		}
		c.Close()
		c.Close()
	}
	if _, err := NewCtx(0, 0, 0); err == nil {
		t.Error("NewCtx(0 threads): no error")
	}
}

// stressTask counts, per index, the calls that covered it. Workers
// other than the caller take 10us first, so that a caller that returns
// too early sees their counts behind.
type stressTask struct{ hits []int }

func (t *stressTask) Run(w, lo, hi int) {
	if w > 0 {
		for start := time.Now(); time.Since(start) < 10*time.Microsecond; {
		}
	}
	for i := lo; i < hi; i++ {
		t.hits[i]++
	}
}

// TestParallelStress runs many tiny tasks back to back and checks after
// each Parallel that every chunk of it is done: a Parallel that returned
// early (say, on a wake-up left over from the task before) shows as a
// count behind, and a lost wake-up as a hang. With more threads than
// GOMAXPROCS the goroutines park at every task.
func TestParallelStress(t *testing.T) {
	// Every 16th last worker stalls after its decrement, longer than the
	// caller spins: the caller returns, posts the next task and parks
	// before that worker wakes it.
	var calls atomic.Int64
	testHookDone = func() {
		if calls.Add(1)%16 == 0 {
			time.Sleep(2 * spinFor)
		}
	}
	defer func() { testHookDone = nil }()
	for _, threads := range []int{2, 3, 4} {
		c, err := NewCtx(threads, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		task := &stressTask{hits: make([]int, threads)}
		for k := 1; k <= 20000; k++ {
			c.Parallel(task, threads)
			for i, h := range task.hits {
				if h != k {
					t.Fatalf("threads %d: after Parallel %d, index %d was run %d times", threads, k, i, h)
				}
			}
		}
		c.Close()
	}
}

// TestActIndex checks At against Channel and that the blocked index is a
// permutation of the plain one.
func TestActIndex(t *testing.T) {
	for _, a := range []Act{{2, 16, 3, 5, true}, {2, 3, 4, 4, false}, {3, 8, 1, 1, true}} {
		seen := make([]bool, a.Len())
		for n := 0; n < a.N; n++ {
			for c := 0; c < a.C; c++ {
				for h := 0; h < a.H; h++ {
					for w := 0; w < a.W; w++ {
						i := a.At(n, c, h, w)
						if i < 0 || i >= a.Len() || seen[i] {
							t.Fatalf("%+v: At(%d,%d,%d,%d) = %d, out of range or repeated", a, n, c, h, w, i)
						}
						seen[i] = true
						if got := a.Channel(i); got != c {
							t.Errorf("%+v: Channel(%d) = %d, want %d", a, i, got, c)
						}
					}
				}
			}
		}
	}
}

// TestLocal checks that local makes a value once per key and Ctx and
// that looking it up again allocates nothing.
func TestLocal(t *testing.T) {
	c, err := NewCtx(2, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	made := 0
	mk := func() any { made++; return new(countTask) }
	a := c.local("k", mk)
	if b := c.local("k", mk); a != b || made != 1 {
		t.Errorf("second lookup made a new value (made %d)", made)
	}
	if c.local("other", mk) == a || made != 2 {
		t.Errorf("another key shares the value (made %d)", made)
	}
	if n := testing.AllocsPerRun(50, func() { _ = c.local("k", mk).(*countTask) }); n != 0 {
		t.Errorf("lookup allocates %v times", n)
	}
}
