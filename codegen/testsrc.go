package codegen

import "strings"

// testSource is the test file of every generated package: properties of
// the step that hold for any network (no allocation in a step, bitwise
// determinism, errors for bad batches, each kernel equal to its pure-Go
// twin on the package's own shapes) and the whole-step benchmarks.
// Correctness against the reference interpreter is tested by the
// compiler's own tests, which generate small networks of every kind.
const testSource = `package PKG

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// batch returns a random batch of images and labels.
func batch(seed uint64) ([]float32, []int32) {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, Batch*ImageLen)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	labels := make([]int32, Batch)
	for i := range labels {
		labels[i] = int32(r.IntN(Classes))
	}
	return x, labels
}

func newModel(t testing.TB, threads int, seed uint64) *Model {
	t.Helper()
	m, err := New(threads, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestStepAllocs checks that TrainStep and Infer allocate nothing.
func TestStepAllocs(t *testing.T) {
	m := newModel(t, 2, 1)
	x, labels := batch(1)
	if n := testing.AllocsPerRun(1, func() {
		if _, err := m.TrainStep(x, labels, 0.01); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("TrainStep allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1, func() {
		if _, err := m.Infer(x); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Infer allocates %v times", n)
	}
}

// TestDeterministic checks that two models with the same seed and thread
// count compute bitwise the same weights, momentum, statistics and
// logits, and that the loss is finite and the weights change.
func TestDeterministic(t *testing.T) {
	run := func() (*Model, []float32) {
		m := newModel(t, 2, 3)
		var losses []float32
		for s := range 2 {
			x, labels := batch(uint64(s))
			loss, err := m.TrainStep(x, labels, 0.1)
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, loss)
		}
		return m, losses
	}
	a, la := run()
	b, lb := run()
	if d := cmp.Diff(la, lb); d != "" {
		t.Errorf("losses differ (-first +second):\n%s", d)
	}
	for _, n := range TensorNames() {
		if d := cmp.Diff(a.Tensor(n), b.Tensor(n)); d != "" {
			t.Errorf("%s differs between two runs (-first +second):\n%s", n, d)
		}
	}
	if d := cmp.Diff(a.Logits(), b.Logits()); d != "" {
		t.Errorf("logits differ (-first +second):\n%s", d)
	}
	fresh := newModel(t, 1, 3)
	if cmp.Equal(fresh.Tensor(TensorNames()[0]), a.Tensor(TensorNames()[0])) {
		t.Errorf("training did not change %s", TensorNames()[0])
	}
	for _, l := range la {
		if !(l > 0 && l < 100) {
			t.Errorf("loss %v", l)
		}
	}
}

// TestBadBatch checks the errors for a batch of the wrong size and for
// labels out of range.
func TestBadBatch(t *testing.T) {
	m := newModel(t, 1, 1)
	x, labels := batch(1)
	for _, c := range []struct {
		x      []float32
		labels []int32
		want   string
	}{
		{x[:len(x)-1], labels, "batch of"},
		{x, labels[:len(labels)-1], "labels, want"},
		{x, append(append([]int32(nil), labels[:len(labels)-1]...), Classes), "is not a class"},
		{x, append(append([]int32(nil), labels[:len(labels)-1]...), -1), "is not a class"},
	} {
		if _, err := m.TrainStep(c.x, c.labels, 0.1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("TrainStep: error %v, want one containing %q", err, c.want)
		}
	}
	if _, err := m.Infer(x[1:]); err == nil || !strings.Contains(err.Error(), "batch of") {
		t.Errorf("Infer: error %v", err)
	}
	if m.Tensor("no.such.tensor") != nil {
		t.Errorf("Tensor of an unknown name is not nil")
	}
}

// TestSaveLoad checks that Load restores exactly what Save wrote, the
// step count included, and that a truncated file, a file of another
// network and a file with a tensor of the wrong shape are errors that
// leave the model unchanged.
func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	a := newModel(t, 1, 5)
	a.SetStep(42)
	path := filepath.Join(dir, "a.safetensors")
	if err := a.Save(path, map[string]string{"note": "x"}); err != nil {
		t.Fatal(err)
	}
	b := newModel(t, 1, 6)
	meta, err := b.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if meta["note"] != "x" || meta[MetaNetwork] != Name || b.Step() != 42 {
		t.Errorf("metadata %v, step %d", meta, b.Step())
	}
	for _, n := range TensorNames() {
		if d := cmp.Diff(a.Tensor(n), b.Tensor(n)); d != "" {
			t.Fatalf("%s differs after Load (-saved +loaded):\n%s", n, d)
		}
	}
	if err := a.Save(path, map[string]string{MetaStep: "1"}); err == nil {
		t.Errorf("Save with a reserved metadata key: no error")
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := newModel(t, 1, 7)
	want := append([]float32(nil), c.Tensor(TensorNames()[0])...)
	bad := map[string][]byte{
		"truncated": data[:len(data)-4],
		"corrupted": append([]byte("{\"x\""), data[4:]...),
		"other":     []byte(strings.Replace(string(data), Name, Name+"x", 1)),
		"bitflip":   flipBit(data, len(data)-9),
	}
	for name, content := range bad {
		p := filepath.Join(dir, name+".safetensors")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Load(p); err == nil {
			t.Errorf("%s: Load gave no error", name)
		}
		if !cmp.Equal(want, c.Tensor(TensorNames()[0])) || c.Step() != 0 {
			t.Errorf("%s: the failed Load changed the model", name)
		}
	}
}

// TestInferFollowsWeights checks that Infer, which keeps the folded and
// packed weights from one call to the next, folds them again after each
// way they change: TrainStep, a write through Tensor and WeightsChanged,
// Load and Init. The reference is a second model given the same tensors
// and told to fold them: its folded weights and logits must be bitwise
// the same. (Logits may be NaN: a very deep net at initialization
// overflows with the running statistics of inference.)
func TestInferFollowsWeights(t *testing.T) {
	x, labels := batch(2)
	m, ref := newModel(t, 2, 8), newModel(t, 2, 9)
	infer := func(m *Model) []float32 {
		t.Helper()
		y, err := m.Infer(x)
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), y...)
	}
	infer(m)
	before := append([]float32(nil), m.folded...)
	check := func(what string) {
		t.Helper()
		got := infer(m)
		for _, n := range TensorNames() {
			copy(ref.Tensor(n), m.Tensor(n))
		}
		ref.refold = true
		want := infer(ref)
		if i := firstBitDiff(m.folded, ref.folded); i >= 0 {
			t.Errorf("after %s, the folded weights differ from a fresh fold at %d: %v, want %v", what, i, m.folded[i], ref.folded[i])
		}
		if i := firstBitDiff(got, want); i >= 0 {
			t.Errorf("after %s, logit %d is %v, want %v as from a fresh fold", what, i, got[i], want[i])
		}
		if firstBitDiff(m.folded, before) < 0 {
			t.Errorf("after %s, the folded weights are those of before", what)
		}
		before = append(before[:0], m.folded...)
	}
	if _, err := m.TrainStep(x, labels, 0.1); err != nil {
		t.Fatal(err)
	}
	check("TrainStep")
	for _, tt := range tensors {
		if tt.role == 0 && len(tt.shape) == 4 && !strings.HasPrefix(tt.name, "stem.") {
			w := m.Tensor(tt.name)
			for i := range w {
				w[i] = -w[i]
			}
			break
		}
	}
	m.WeightsChanged()
	check("a write and WeightsChanged")
	path := filepath.Join(t.TempDir(), "other.safetensors")
	if err := newModel(t, 1, 10).Save(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(path); err != nil {
		t.Fatal(err)
	}
	check("Load")
	m.Init(11)
	check("Init")
}

// firstBitDiff is the first index where a and b differ bit for bit (so
// that NaN equals the same NaN), or -1.
func firstBitDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// flipBit returns a copy of data with the low bit of byte i flipped: a
// corruption inside the tensor data, which only the checksum can see.
func flipBit(data []byte, i int) []byte {
	c := append([]byte(nil), data...)
	c[i] ^= 1
	return c
}

func randFloats(r *rand.Rand, n int) []float32 {
	v := AlignedFloats(n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// near reports the largest difference of a and b relative to b's
// largest magnitude.
func near(a, b []float32) float64 {
	var d, m float64
	for i := range b {
		d = max(d, float64(abs(a[i]-b[i])))
		m = max(m, float64(abs(b[i])))
	}
	return d / max(m, 1e-30)
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// TestKernelsMatchTwins runs each specialized kernel of the package on
// its first two images, with the assembly and with the pure-Go twin, and
// compares the results.
func TestKernelsMatchTwins(t *testing.T) {
	if !UsesAsm() {
		t.Skip("this build runs the twins only")
	}
	const tol = 1e-5
	for i := range Conv3x3Kernels {
		k := &Conv3x3Kernels[i]
		s := &k.Conv3x3Shape
		r := rand.New(rand.NewPCG(uint64(i), 7))
		x, w, res := randFloats(r, s.XLen()), randFloats(r, s.WLen()), randFloats(r, s.YLen())
		bias, scale, shift := randFloats(r, s.Cout), randFloats(r, s.Cin), randFloats(r, s.Cin)
		y1, y2 := AlignedFloats(s.YLen()), AlignedFloats(s.YLen())
		st1, st2 := AlignedFloats(s.StatsLen()), AlignedFloats(s.StatsLen())
		n := min(2, s.N)
		k.Asm(x, w, bias, scale, shift, res, y1, st1, AlignedFloats(s.ScratchLen()), 0, n)
		k.Go(x, w, bias, scale, shift, res, y2, st2, AlignedFloats(s.ScratchLen()), 0, n)
		if e := near(y1, y2); !(e <= tol) {
			t.Errorf("%s: output differs from the twin by %.3g", s.Name, e)
		}
		if e := near(st1, st2); !(e <= tol) {
			t.Errorf("%s: statistics differ from the twin by %.3g", s.Name, e)
		}
	}
	for i := range Conv3x3DxKernels {
		k := &Conv3x3DxKernels[i]
		s := &k.Conv3x3DxShape
		r := rand.New(rand.NewPCG(uint64(i), 8))
		dy, w := randFloats(r, s.DyLen()), randFloats(r, s.WLen())
		dx1, dx2 := AlignedFloats(s.DxLen()), AlignedFloats(s.DxLen())
		n := min(2, s.N)
		k.Asm(dy, w, dx1, AlignedFloats(s.ScratchLen()), 0, n)
		k.Go(dy, w, dx2, AlignedFloats(s.ScratchLen()), 0, n)
		if e := near(dx1, dx2); !(e <= tol) {
			t.Errorf("%s: dx differs from the twin by %.3g", s.Name, e)
		}
	}
	for i := range Conv3x3DwKernels {
		k := &Conv3x3DwKernels[i]
		s := &k.Conv3x3DwShape
		r := rand.New(rand.NewPCG(uint64(i), 9))
		x, dy := randFloats(r, s.XLen()), randFloats(r, s.DyLen())
		scale, shift := randFloats(r, s.Cin), randFloats(r, s.Cin)
		dw1, dw2 := AlignedFloats(s.DwLen()), AlignedFloats(s.DwLen())
		n := min(2, s.N)
		k.Asm(x, dy, scale, shift, dw1, AlignedFloats(s.ScratchLen()), 0, n)
		k.Go(x, dy, scale, shift, dw2, AlignedFloats(s.ScratchLen()), 0, n)
		if e := near(dw1, dw2); !(e <= tol) {
			t.Errorf("%s: dw differs from the twin by %.3g", s.Name, e)
		}
	}
}

// TestKernels1x1MatchTwins does the same for the 1x1 kernels.
func TestKernels1x1MatchTwins(t *testing.T) {
	if !UsesAsm() {
		t.Skip("this build runs the twins only")
	}
	const tol = 1e-5
	for i := range Conv1x1Kernels {
		k := &Conv1x1Kernels[i]
		s := &k.Conv1x1Shape
		r := rand.New(rand.NewPCG(uint64(i), 10))
		x, w, res := randFloats(r, s.XLen()), randFloats(r, s.WLen()), randFloats(r, s.YLen())
		bias, scale, shift := randFloats(r, s.Cout), randFloats(r, s.Cin), randFloats(r, s.Cin)
		y1, y2 := AlignedFloats(s.YLen()), AlignedFloats(s.YLen())
		st1, st2 := AlignedFloats(s.StatsLen()), AlignedFloats(s.StatsLen())
		n := min(2, s.N)
		k.Asm(x, w, bias, scale, shift, res, y1, st1, AlignedFloats(s.ScratchLen()), 0, n)
		k.Go(x, w, bias, scale, shift, res, y2, st2, AlignedFloats(s.ScratchLen()), 0, n)
		if e := near(y1, y2); !(e <= tol) {
			t.Errorf("%s: output differs from the twin by %.3g", s.Name, e)
		}
		if e := near(st1, st2); !(e <= tol) {
			t.Errorf("%s: statistics differ from the twin by %.3g", s.Name, e)
		}
	}
	for i := range Conv1x1DxKernels {
		k := &Conv1x1DxKernels[i]
		s := &k.Conv1x1Shape
		r := rand.New(rand.NewPCG(uint64(i), 11))
		dy, w := randFloats(r, s.YLen()), randFloats(r, s.WLen())
		dx1, dx2 := AlignedFloats(s.XLen()), AlignedFloats(s.XLen())
		n := min(2, s.N)
		k.Asm(dy, w, dx1, AlignedFloats(s.ScratchLen()), 0, n)
		k.Go(dy, w, dx2, AlignedFloats(s.ScratchLen()), 0, n)
		if e := near(dx1, dx2); !(e <= tol) {
			t.Errorf("%s: dx differs from the twin by %.3g", s.Name, e)
		}
	}
	for i := range Conv1x1DwKernels {
		k := &Conv1x1DwKernels[i]
		s := &k.Conv1x1Shape
		r := rand.New(rand.NewPCG(uint64(i), 12))
		x, dy := randFloats(r, s.XLen()), randFloats(r, s.YLen())
		scale, shift := randFloats(r, s.Cin), randFloats(r, s.Cin)
		dw1, dw2 := AlignedFloats(s.WLen()), AlignedFloats(s.WLen())
		n := min(2, s.N)
		k.Asm(dy, x, scale, shift, dw1, AlignedFloats(s.ScratchLen()), 0, n)
		k.Go(dy, x, scale, shift, dw2, AlignedFloats(s.ScratchLen()), 0, n)
		if e := near(dw1, dw2); !(e <= tol) {
			t.Errorf("%s: dw differs from the twin by %.3g", s.Name, e)
		}
	}
}

// TestDxKernelsOnViews runs each backward-data kernel on its second image
// twice, as part of the batch and as image 0 of views that start there
// (as the fused drivers call them), and wants the same bits.
func TestDxKernelsOnViews(t *testing.T) {
	check := func(name string, n, dyLen, dxLen, scratch int, run func(dy, dx, scratch []float32, n0, n1 int), r *rand.Rand) {
		if n < 2 {
			return
		}
		dyImage, dxImage := dyLen/n, dxLen/n
		dy := randFloats(r, dyLen)
		full, view := AlignedFloats(dxLen), AlignedFloats(dxImage)
		for i := range view {
			view[i] = float32(math.NaN())
		}
		run(dy, full, AlignedFloats(scratch), 1, 2)
		run(dy[dyImage:2*dyImage], view, AlignedFloats(scratch), 0, 1)
		for i, v := range view {
			if math.Float32bits(v) != math.Float32bits(full[dxImage+i]) {
				t.Errorf("%s: element %d of the view is %g, want %g", name, i, v, full[dxImage+i])
				return
			}
		}
	}
	for i := range Conv3x3DxKernels {
		k := &Conv3x3DxKernels[i]
		s := &k.Conv3x3DxShape
		r := rand.New(rand.NewPCG(uint64(i), 13))
		w := randFloats(r, s.WLen())
		check(s.Name, s.N, s.DyLen(), s.DxLen(), s.ScratchLen(), func(dy, dx, scratch []float32, n0, n1 int) { k.Run(dy, w, dx, scratch, n0, n1) }, r)
	}
	for i := range Conv1x1DxKernels {
		k := &Conv1x1DxKernels[i]
		s := &k.Conv1x1Shape
		r := rand.New(rand.NewPCG(uint64(i), 14))
		w := randFloats(r, s.WLen())
		check(s.Name, s.N, s.YLen(), s.XLen(), s.ScratchLen(), func(dy, dx, scratch []float32, n0, n1 int) { k.Run(dy, w, dx, scratch, n0, n1) }, r)
	}
}

// allCorePeak measures the FMA peak of threads cores in GFLOP/s, with
// the package's peak loop on threads goroutines.
func allCorePeak(threads int) float64 {
	const iters = 1 << 20
	best := 0.0
	for range 5 {
		start := time.Now()
		var wg sync.WaitGroup
		for range threads {
			wg.Go(func() { PeakFMA(iters, 0, 0) })
		}
		wg.Wait()
		if s := time.Since(start).Seconds(); s > 0 {
			best = max(best, float64(threads)*iters*PeakFLOPsPerIter/s/1e9)
		}
	}
	return best
}

// BenchmarkTrainStep reports images/s, GFLOP/s (model FLOPs: six times
// the forward multiply-accumulates, as frameworks count a training step)
// and the fraction of the FMA peak of GOMAXPROCS cores measured in the
// same run. When the memory budget makes the step recompute part of its
// forward pass, frac_peak_incl_recompute counts those FLOPs too.
func BenchmarkTrainStep(b *testing.B) {
	threads := runtime.GOMAXPROCS(0)
	peak := allCorePeak(threads)
	m := newModel(b, threads, 1)
	x, labels := batch(1)
	// One step before the timed ones, as bench/pytorch_bench.py warms up:
	// the first touches the arena's pages and the kernels' code.
	if _, err := m.TrainStep(x, labels, 0.01); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.TrainStep(x, labels, 0.01); err != nil {
			b.Fatal(err)
		}
	}
	report(b, TrainFLOPs, peak)
	if RecomputeFLOPs > 0 {
		s := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric((TrainFLOPs+RecomputeFLOPs)/s/1e9/peak, "frac_peak_incl_recompute")
	}
}

// BenchmarkInfer reports the same for inference.
func BenchmarkInfer(b *testing.B) {
	threads := runtime.GOMAXPROCS(0)
	peak := allCorePeak(threads)
	m := newModel(b, threads, 1)
	x, _ := batch(1)
	if _, err := m.Infer(x); err != nil { // warm-up, as for TrainStep
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Infer(x); err != nil {
			b.Fatal(err)
		}
	}
	report(b, InferFLOPs, peak)
}

func report(b *testing.B, flops, peak float64) {
	s := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(Batch/s, "images/s")
	b.ReportMetric(flops/s/1e9, "GFLOP/s")
	b.ReportMetric(flops/s/1e9/peak, "frac_peak")
	b.ReportMetric(peak, "peak_GFLOP/s")
}
`

// testFile returns the test source for package pkg.
func testFile(pkg string) []byte {
	return []byte(strings.Replace(testSource, "package PKG", header+"\n\npackage "+pkg, 1))
}
