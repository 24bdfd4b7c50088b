package train

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/resnetc/resnetc/runtime/data"
)

// rankedInfer returns logits in which the label of each image (its second
// pixel) comes at the rank given by its first pixel: the classes before it
// in index order take the scores above it. With mean 0 and std 1 the
// pixels reach the model unchanged.
func rankedInfer(batch, imgLen, classes int) func(x []float32) []float32 {
	return func(x []float32) []float32 {
		z := make([]float32, batch*classes)
		for i := range batch {
			r, label := int(x[i*imgLen]), int(x[i*imgLen+1])
			row := z[i*classes : (i+1)*classes]
			row[label] = float32(classes - r)
			score := classes
			for c := range classes {
				if c == label {
					continue
				}
				if score == classes-r {
					score--
				}
				row[c] = float32(score)
				score--
			}
		}
		return z
	}
}

// writeCheckpoint saves m with the trainer's metadata for a run on spec,
// normalizing with mean and std.
func writeCheckpoint(t *testing.T, m Model, path, spec string, mean, std []float32, names []string) {
	t.Helper()
	cm := checkpointMeta{
		cfg:  runConfig{Data: spec, Iters: 100, LR: 0.1, Schedule: ScheduleStep, Seed: 1, Threads: 1, LogEvery: 10, CkptEvery: 10},
		mean: mean, std: std, classNames: names,
	}
	if err := m.Save(path, cm.encode()); err != nil {
		t.Fatal(err)
	}
}

func TestEvalAgainstHandCount(t *testing.T) {
	te := newTestEnv()
	const classes, imgLen = 12, 48
	ranks := []int{0, 0, 1, 0, 5, 4, 0, 11, 0, 0, 2, 0, 6, 0, 0, 0, 3, 0, 0, 7}
	// 8 ranks above 0 are top-1 errors (1 5 4 11 2 6 3 7); 4 are at 5 or
	// more, top-5 errors (5 11 6 7). 20 images at batch 8: the last batch
	// has 4 real images and 4 repeats, which must not count.
	mk := func(name string, n int) *data.Set {
		s := &data.Set{Name: name, N: n, C: 3, H: 4, W: 4, Classes: classes, Images: make([]byte, n*imgLen), Labels: make([]int32, n)}
		for i := range n {
			s.Labels[i] = int32((i * 5) % classes)
			s.Images[i*imgLen] = byte(ranks[i%len(ranks)])
			s.Images[i*imgLen+1] = byte(s.Labels[i])
		}
		return s
	}
	te.sets["ranked"] = [2]*data.Set{mk("ranked/train", 8), mk("ranked/test", 20)}
	net := fakeNet("ranked", 4, 4, 3, classes, 8, nil, func(m *fakeModel) { m.infer = rankedInfer(8, imgLen, classes) })
	m, _ := net.New(1, 1)
	m.SetStep(77)
	ck := filepath.Join(t.TempDir(), "ranked.safetensors")
	writeCheckpoint(t, m, ck, "ranked", []float32{0, 0, 0}, []float32{1, 1, 1}, nil)
	if code := te.run(net, "eval", "-ckpt", ck); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	want := regexp.MustCompile(`^ranked at step 77 on ranked/test \(20 images\): test error 40\.00% \(8/20\), top-5 20\.00% \(4/20\)(, \d+ images/s)?\n$`)
	if !want.MatchString(te.out.String()) {
		t.Errorf("eval printed %q", te.out.String())
	}

	// With 10 classes or fewer, no top-5.
	net10 := fakeNet("ten", 4, 4, 3, 10, 8, nil, func(m *fakeModel) { m.infer = rankedInfer(8, imgLen, 10) })
	for _, s := range te.sets["ranked"] {
		s.Classes = 10
		for i := range s.N {
			s.Labels[i] = int32(i % 10)
			s.Images[i*imgLen] = byte(min(ranks[i%len(ranks)], 9))
			s.Images[i*imgLen+1] = byte(s.Labels[i])
		}
	}
	m10, _ := net10.New(1, 1)
	ck10 := filepath.Join(t.TempDir(), "ten.safetensors")
	writeCheckpoint(t, m10, ck10, "ranked", []float32{0, 0, 0}, []float32{1, 1, 1}, nil)
	if code := te.run(net10, "eval", "-ckpt", ck10); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	if want := regexp.MustCompile(`test error 40\.00% \(8/20\)(, \d+ images/s)?\n$`); !want.MatchString(te.out.String()) {
		t.Errorf("eval printed %q", te.out.String())
	}
}

func TestEvalOfTrainedCheckpoint(t *testing.T) {
	te := newTestEnv()
	out := t.TempDir()
	if code := te.run(tinyNet(nil, nil), "train", "-data", "tiny", "-iters", "24", "-out", out); code != 0 {
		t.Fatalf("train: exit %d: %s", code, te.errb.String())
	}
	ps, err := ReadMetrics(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	last := ps[len(ps)-1]
	if last.Iter != 24 || last.TestError == nil {
		t.Fatalf("last point %+v", last)
	}
	// eval finds the data and the normalization in the checkpoint, and
	// agrees with the training's final evaluation.
	if code := te.run(tinyNet(nil, nil), "eval", "-ckpt", ckptPath(out)); code != 0 {
		t.Fatalf("eval: exit %d: %s", code, te.errb.String())
	}
	mt := regexp.MustCompile(`at step 24 on tiny/test \(40 images\): test error ([0-9.]+)% \((\d+)/40\)`).FindStringSubmatch(te.out.String())
	if mt == nil {
		t.Fatalf("eval printed %q", te.out.String())
	}
	wrong, _ := strconv.Atoi(mt[2])
	if got := 100 * float64(wrong) / 40; got != *last.TestError || mt[1] != fmt.Sprintf("%.2f", *last.TestError) {
		t.Errorf("eval says %s%% (%d wrong), training's final test error %v", mt[1], wrong, *last.TestError)
	}
}
