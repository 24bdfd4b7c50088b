package train

import (
	"bytes"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/resnetc/resnetc/runtime/data"
)

func TestTrainLearnsAndLogs(t *testing.T) {
	te := newTestEnv()
	var made []*fakeModel
	net := tinyNet(&made, nil)
	out := t.TempDir()
	code := te.run(net, "train", "-data", "tiny", "-iters", "40", "-lr", "0.05", "-log-every", "5", "-eval-every", "10",
		"-ckpt-every", "15", "-seed", "3", "-threads", "1", "-out", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, te.out.String(), te.errb.String())
	}
	if len(made) != 1 {
		t.Fatalf("%d models made, want 1", len(made))
	}
	m := made[0]
	if len(m.losses) != 40 || m.step != 40 {
		t.Fatalf("%d steps taken (step %d), want 40", len(m.losses), m.step)
	}
	if !*m.closed {
		t.Error("the model was not closed")
	}

	// metrics.jsonl against the steps the model saw: a point every 5
	// iterations, the test error every 10; train_loss and train_error are
	// the means of the model's losses and of its logits' mistakes since the
	// previous point.
	ps, err := ReadMetrics(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 8 {
		t.Fatalf("%d metrics points, want 8", len(ps))
	}
	sched := Schedule{Kind: ScheduleStep, LR: 0.05, Total: 40, Milestones: []int64{20, 30}}
	train := te.sets["tiny"][0]
	for i, p := range ps {
		it := int64(5 * (i + 1))
		if p.Iter != it {
			t.Fatalf("point %d at iteration %d, want %d", i, p.Iter, it)
		}
		var loss float64
		wrong := 0
		for k := it - 5; k < it; k++ {
			loss += float64(m.losses[k])
			for j, l := range m.batchL[k] {
				row := m.batchZ[k][j*4 : j*4+4]
				if slices.Index(row, slices.Max(row)) != int(l) {
					wrong++
				}
			}
		}
		if want := loss / 5; math.Abs(p.TrainLoss-want) > 1e-9 {
			t.Errorf("iter %d: train_loss %v, want %v", it, p.TrainLoss, want)
		}
		if want := 100 * float64(wrong) / 40; math.Abs(p.TrainError-want) > 1e-9 {
			t.Errorf("iter %d: train_error %v, want %v", it, p.TrainError, want)
		}
		if want := float64(it) * 8 / float64(train.N); math.Abs(p.Epoch-want) > 1e-12 {
			t.Errorf("iter %d: epoch %v, want %v", it, p.Epoch, want)
		}
		if want := sched.At(it - 1); !near(p.LR, want) {
			t.Errorf("iter %d: lr %v, want %v", it, p.LR, want)
		}
		if (p.TestError != nil) != (it%10 == 0) {
			t.Errorf("iter %d: test_error %v; want one at multiples of 10 only", it, p.TestError)
		}
		if p.ImagesPerS <= 0 || p.ElapsedS <= 0 || (i > 0 && p.ElapsedS < ps[i-1].ElapsedS) {
			t.Errorf("iter %d: images_per_s %v, elapsed_s %v", it, p.ImagesPerS, p.ElapsedS)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	first := lines(string(raw))[0]
	for _, key := range []string{`"iter":5`, `"epoch":`, `"train_loss":`, `"train_error":`, `"lr":0.05`, `"images_per_s":`, `"elapsed_s":`} {
		if !strings.Contains(first, key) {
			t.Errorf("first metrics line %s lacks %s", first, key)
		}
	}
	if strings.Contains(first, "test_error") {
		t.Errorf("first metrics line %s has a test_error but was not evaluated", first)
	}

	// It learned: the loss fell and the final test error is well below
	// chance (75% for 4 classes), and equals an independent count with
	// the final weights.
	if ps[7].TrainLoss >= ps[0].TrainLoss*0.7 {
		t.Errorf("train loss went from %v to %v", ps[0].TrainLoss, ps[7].TrainLoss)
	}
	final := *ps[7].TestError
	t.Logf("test error %.1f%%, train loss %.3f -> %.3f", final, ps[0].TrainLoss, ps[7].TrainLoss)
	if final > 30 {
		t.Errorf("final test error %.1f%%; the classifier did not learn", final)
	}
	if want := oracleTestError(m, te.sets["tiny"][1], train); math.Abs(final-want) > 1e-9 {
		t.Errorf("final test error %v, want %v by an independent count", final, want)
	}

	// The checkpoint holds the final state and the run's definition.
	ck := readCheckpoint(t, ckptPath(out))
	if ck.Metadata["step"] != "40" {
		t.Errorf("checkpoint at step %s, want 40", ck.Metadata["step"])
	}
	cm, err := decodeCheckpointMeta(ck.Metadata, net)
	if err != nil {
		t.Fatal(err)
	}
	if cm.cfg.Iters != 40 || cm.cfg.Seed != 3 || cm.cfg.Data != "tiny" || !slices.Equal(cm.cfg.Milestones, []int64{20, 30}) || cm.cfg.Threads != 1 {
		t.Errorf("checkpoint run definition %+v", cm.cfg)
	}
	if len(cm.classNames) != 4 || cm.classNames[2] != "kind2" {
		t.Errorf("checkpoint class names %v", cm.classNames)
	}

	// Plain lines every 5 iterations (stdout is not a terminal), test
	// errors at 10, 20, 30, 40, and a summary.
	got := te.out.String()
	if n := strings.Count(got, "\niter "); n != 8+4 {
		t.Errorf("%d iteration lines, want 12:\n%s", n, got)
	}
	if !strings.Contains(got, "iter 40/40 epoch 3.33: test error ") || !strings.Contains(got, "done: 40 iterations") {
		t.Errorf("output lacks the final evaluation or summary:\n%s", got)
	}
	checkPNG(t, filepath.Join(out, "curves.png"))
}

// oracleTestError counts, in float64 from the model's weights, the test
// images whose class is not the top one, with the training set's
// statistics.
func oracleTestError(m *fakeModel, ts, tr *data.Set) float64 {
	mean, std := make([]float64, 3), make([]float64, 3)
	hw := tr.H * tr.W
	for c := range 3 {
		var s, ss float64
		for i := range tr.N {
			for _, v := range tr.Images[(i*3+c)*hw : (i*3+c+1)*hw] {
				s += float64(v)
				ss += float64(v) * float64(v)
			}
		}
		n := float64(tr.N * hw)
		mean[c] = s / n
		std[c] = math.Sqrt(ss/n - mean[c]*mean[c])
	}
	wrong := 0
	for i := range ts.N {
		img := ts.Images[i*3*hw : (i+1)*3*hw]
		best, bestZ := -1, math.Inf(-1)
		for k := range m.k {
			z := float64(m.b[k])
			for j, v := range img {
				x := float64(float32((float64(v) - float64(float32(mean[j/hw]))) / float64(float32(std[j/hw]))))
				z += float64(m.w[k*m.d+j]) * x
			}
			if z > bestZ {
				best, bestZ = k, z
			}
		}
		if best != int(ts.Labels[i]) {
			wrong++
		}
	}
	return 100 * float64(wrong) / float64(ts.N)
}

// checkPNG checks that path is a PNG image with more than one colour.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() < 200 || b.Dy() < 200 {
		t.Fatalf("%s is %v", path, b)
	}
	colours := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) < 3 {
		t.Errorf("%s has %d colours: nothing drawn", path, len(colours))
	}
}

func TestCurvesPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "curves.png")
	te := func(v float64) *float64 { return &v }
	ps := []Point{
		{Iter: 100, TrainLoss: 2.1}, {Iter: 200, TrainLoss: 1.6, TestError: te(55)},
		{Iter: 300, TrainLoss: 1.2}, {Iter: 400, TrainLoss: 0.9, TestError: te(31.5)},
	}
	if err := WriteCurves(path, "net: test error (solid), training loss (dashed)", ps); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, path)
	// The red test-error line and the blue loss line are both drawn.
	f, _ := os.Open(path)
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	red, blue := 0, 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r > 0x8000 && g < 0x4000 && bl < 0x4000 {
				red++
			}
			if bl > 0x6000 && r < 0x4000 && g < 0x4000 {
				blue++
			}
		}
	}
	if red < 50 || blue < 50 {
		t.Errorf("%d red and %d blue pixels: a curve is missing", red, blue)
	}
	if err := WriteCurves(path, "x", nil); err == nil {
		t.Error("WriteCurves of no points succeeded")
	}
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Error("a temporary file was left behind")
	}
}

// tensorsOf returns the tensor bytes of a checkpoint by name.
func tensorsOf(t *testing.T, path string) map[string][]byte {
	f := readCheckpoint(t, path)
	m := map[string][]byte{}
	for _, x := range f.Tensors {
		m[x.Name] = x.Data
	}
	return m
}

// sameTensors fails unless two checkpoints hold the same bits.
func sameTensors(t *testing.T, a, b string) {
	t.Helper()
	ta, tb := tensorsOf(t, a), tensorsOf(t, b)
	if len(ta) != 4 || len(ta) != len(tb) {
		t.Fatalf("%d and %d tensors", len(ta), len(tb))
	}
	for name, x := range ta {
		if !bytes.Equal(x, tb[name]) {
			t.Errorf("tensor %s differs between %s and %s", name, a, b)
		}
	}
}

// comparable drops what depends on the clock from metrics points.
func comparable(ps []Point) []Point {
	out := slices.Clone(ps)
	for i := range out {
		out[i].ImagesPerS, out[i].ElapsedS = 0, 0
	}
	return out
}

func TestResumeBitwise(t *testing.T) {
	args := []string{"train", "-data", "tiny", "-iters", "20", "-log-every", "3", "-eval-every", "7", "-seed", "9", "-threads", "2"}
	te := newTestEnv()
	full := t.TempDir()
	if code := te.run(tinyNet(nil, nil), append(args, "-out", full)...); code != 0 {
		t.Fatalf("full run: exit %d: %s", code, te.errb.String())
	}

	// The same run stopped after 10 iterations (mid-way between logged
	// points and evaluations), then resumed to 20.
	part := t.TempDir()
	stop := make(chan struct{})
	te.notify = func() (<-chan struct{}, func()) { return stop, func() {} }
	stopAt := func(m *fakeModel) {
		if m.step == 10 {
			close(stop)
		}
	}
	if code := te.run(tinyNet(nil, func(m *fakeModel) { m.onStep = stopAt }), append(args, "-out", part)...); code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d, want %d: %s", code, exitInterrupted, te.errb.String())
	}
	ck := ckptPath(part)
	if got := te.errb.String(); !strings.Contains(got, "interrupted at iteration 10 of 20: checkpoint saved to "+ck) ||
		!strings.Contains(got, "resume with: trainer train -resume "+ck) {
		t.Errorf("interruption message:\n%s", got)
	}
	if s := readCheckpoint(t, ck).Metadata["step"]; s != "10" {
		t.Fatalf("checkpoint at step %s, want 10", s)
	}
	te.notify = func() (<-chan struct{}, func()) { return nil, func() {} }
	var made []*fakeModel
	if code := te.run(tinyNet(&made, nil), "train", "-resume", ck); code != 0 {
		t.Fatalf("resumed run: exit %d: %s", code, te.errb.String())
	}
	if len(made) != 1 || len(made[0].losses) != 10 || made[0].threads != 2 {
		t.Fatalf("the resumed run made %d models, took %d steps with %d threads; want 1, 10, 2", len(made), len(made[0].losses), made[0].threads)
	}
	if !strings.Contains(te.out.String(), "resuming tiny-linear at iteration 10 of 20") {
		t.Errorf("resume output:\n%s", te.out.String())
	}
	sameTensors(t, ckptPath(full), ck)

	// The metrics continue as if uninterrupted: same points, none twice.
	pf, err := ReadMetrics(filepath.Join(full, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	pp, err := ReadMetrics(filepath.Join(part, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := comparable(pf), comparable(pp); !slices.EqualFunc(a, b, pointEqual) {
		t.Errorf("metrics differ:\nfull    %+v\nresumed %+v", a, b)
	}
	checkPNG(t, filepath.Join(part, "curves.png"))

	// Another thread count is allowed, with a warning.
	if code := te.run(tinyNet(nil, nil), "train", "-resume", ck, "-threads", "3"); code != 0 ||
		te.errb.String() != "warning: -threads 3 differs from the checkpoint's 2: the run continues, but not bit for bit as it would have\n" {
		t.Errorf("resuming with other threads: exit %d, stderr %q", code, te.errb.String())
	}

	// Resuming a complete run evaluates it and trains no more.
	if code := te.run(tinyNet(nil, nil), "train", "-resume", ck); code != 0 || !strings.Contains(te.out.String(), "the run was complete: test error") {
		t.Errorf("resuming a complete run: exit %d\n%s%s", code, te.out.String(), te.errb.String())
	}
}

func pointEqual(a, b Point) bool {
	if (a.TestError == nil) != (b.TestError == nil) || a.TestError != nil && *a.TestError != *b.TestError {
		return false
	}
	a.TestError, b.TestError = nil, nil
	return a == b
}

func TestResumeAfterRealInterrupt(t *testing.T) {
	te := newTestEnv()
	var stop <-chan struct{}
	te.notify = func() (<-chan struct{}, func()) {
		s, release := signalStop()
		stop = s
		return s, release
	}
	out := t.TempDir()
	// At step 5 the process sends itself SIGINT and waits for the trainer
	// to see it, so the stop falls after iteration 5.
	kill := func(m *fakeModel) {
		if m.step != 5 {
			return
		}
		syscall.Kill(syscall.Getpid(), syscall.SIGINT)
		select {
		case <-stop:
		case <-time.After(10 * time.Second):
			t.Error("SIGINT did not close the stop channel")
		}
	}
	args := []string{"train", "-data", "tiny", "-iters", "30", "-eval-every", "10", "-seed", "4"}
	code := te.run(tinyNet(nil, func(m *fakeModel) { m.onStep = kill }), append(args, "-out", out)...)
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d\n%s", code, exitInterrupted, te.errb.String())
	}
	ck := ckptPath(out)
	if want := "interrupted at iteration 5 of 30: checkpoint saved to " + ck + "\nresume with: trainer train -resume " + ck + "\n"; te.errb.String() != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", te.errb.String(), want)
	}
	if s := readCheckpoint(t, ck).Metadata["step"]; s != "5" {
		t.Fatalf("checkpoint at step %s, want 5", s)
	}
	// Flags that define the run may be repeated if they match.
	te.notify = func() (<-chan struct{}, func()) { return nil, func() {} }
	if code := te.run(tinyNet(nil, nil), "train", "-resume", ck, "-iters", "30", "-seed", "4", "-data", "tiny"); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, te.errb.String())
	}
	full := t.TempDir()
	if code := te.run(tinyNet(nil, nil), append(args, "-out", full)...); code != 0 {
		t.Fatalf("uninterrupted run: exit %d: %s", code, te.errb.String())
	}
	sameTensors(t, ckptPath(full), ck)
}

func TestProgressBarOnTerminal(t *testing.T) {
	te := newTestEnv()
	te.terminal = true
	if code := te.run(tinyNet(nil, nil), "train", "-data", "tiny", "-iters", "12", "-out", t.TempDir()); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	got := te.out.String()
	if !strings.Contains(got, "12/12") || !strings.Contains(got, "img/s") || !strings.Contains(got, "loss ") {
		t.Errorf("no progress bar with count, loss and throughput:\n%q", got)
	}
	if strings.Contains(got, "train-error") {
		t.Errorf("plain log lines printed on a terminal:\n%s", got)
	}
}

func TestStalled(t *testing.T) {
	for _, c := range []struct {
		waited, wall time.Duration
		steps        int64
		want         bool
	}{
		{2 * time.Second, 10 * time.Second, 20, true},
		{2 * time.Second, 30 * time.Second, 20, false}, // 6.7%
		{2 * time.Second, 10 * time.Second, 19, false}, // still filling up
		{900 * time.Millisecond, 2 * time.Second, 100, false},
	} {
		if got := stalled(c.waited, c.wall, c.steps, 0.1); got != c.want {
			t.Errorf("stalled(%v, %v, %d) = %v, want %v", c.waited, c.wall, c.steps, got, c.want)
		}
	}
}

func TestDownloadThenTrain(t *testing.T) {
	te := newTestEnv()
	var asked []string
	te.download = func(name string, progress io.Writer) (string, error) {
		if progress != te.stderr {
			t.Error("the download's progress does not go to stderr")
		}
		asked = append(asked, name)
		return "tiny", nil
	}
	var coarse []bool
	load := te.loadData
	te.loadData = func(spec string, c bool) (*data.Set, *data.Set, error) {
		coarse = append(coarse, c)
		return load(spec, c)
	}
	out := t.TempDir()
	if code := te.run(tinyNet(nil, nil), "train", "-download", "cifar-100", "-coarse", "-iters", "4", "-out", out); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	if !slices.Equal(asked, []string{"cifar-100"}) || !slices.Equal(coarse, []bool{true}) {
		t.Errorf("downloads %v, coarse loads %v", asked, coarse)
	}
	cm, err := decodeCheckpointMeta(readCheckpoint(t, ckptPath(out)).Metadata, tinyNet(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if cm.cfg.Data != "tiny" || !cm.cfg.Coarse {
		t.Errorf("the run records data %q, coarse %v", cm.cfg.Data, cm.cfg.Coarse)
	}
	// Resuming reads the downloaded data where the checkpoint says, with
	// its labels.
	if code := te.run(tinyNet(nil, nil), "train", "-resume", ckptPath(out)); code != 0 || !slices.Equal(coarse, []bool{true, true}) {
		t.Errorf("resume: exit %d, coarse loads %v: %s", code, coarse, te.errb.String())
	}
}
