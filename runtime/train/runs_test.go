package train

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRuns(t *testing.T) {
	te := newTestEnv()
	out := t.TempDir()
	var made []*fakeModel
	net := tinyNet(&made, nil)
	args := []string{"runs", "-n", "3", "-seed", "5", "-data", "tiny", "-iters", "12", "-lr", "0.02", "-out", out}
	if code := te.run(net, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	if te.loads != 1 {
		t.Errorf("the data was loaded %d times, want once", te.loads)
	}
	if len(made) != 3 {
		t.Fatalf("%d models made, want 3", len(made))
	}
	// Each run's final test error is the last point of its metrics; the
	// report holds them and their statistics, computed here by hand.
	var errs []float64
	for i := range 3 {
		dir := filepath.Join(out, fmt.Sprintf("run-%d", i))
		ps, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		last := ps[len(ps)-1]
		if last.Iter != 12 || last.TestError == nil {
			t.Fatalf("run %d: last point %+v", i, last)
		}
		errs = append(errs, *last.TestError)
		cm, err := decodeCheckpointMeta(readCheckpoint(t, ckptPath(dir)).Metadata, net)
		if err != nil {
			t.Fatal(err)
		}
		if cm.cfg.Seed != uint64(5+i) {
			t.Errorf("run %d trained with seed %d, want %d", i, cm.cfg.Seed, 5+i)
		}
	}
	if slices.Equal(made[0].w, made[1].w) {
		t.Error("runs 0 and 1 ended with the same weights: the seeds were not used")
	}
	sorted := slices.Sorted(slices.Values(errs))
	mean := (errs[0] + errs[1] + errs[2]) / 3
	std := math.Sqrt(((errs[0]-mean)*(errs[0]-mean) + (errs[1]-mean)*(errs[1]-mean) + (errs[2]-mean)*(errs[2]-mean)) / 2)
	b, err := os.ReadFile(filepath.Join(out, "runs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep RunsReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Network != "tiny-linear" || len(rep.Runs) != 3 {
		t.Fatalf("runs.json: %s", b)
	}
	for i, r := range rep.Runs {
		if r.Seed != uint64(5+i) || r.TestError != errs[i] || r.Dir != filepath.Join(out, fmt.Sprintf("run-%d", i)) {
			t.Errorf("runs.json run %d: %+v, want seed %d and test error %v", i, r, 5+i, errs[i])
		}
	}
	s := rep.TestError
	if s.N != 3 || s.Median != sorted[1] || !near(s.Mean, mean) || !near(s.Std, std) || s.Min != sorted[0] || s.Max != sorted[2] {
		t.Errorf("summary %+v, want median %v mean %v std %v", s, sorted[1], mean, std)
	}
	want := fmt.Sprintf("median %.2f%%, mean %.2f±%.2f%% (min %.2f, max %.2f)", sorted[1], mean, std, sorted[0], sorted[2])
	if !strings.Contains(te.out.String(), want) || !strings.Contains(te.out.String(), "test error over 3 runs (seeds 5 to 7)") {
		t.Errorf("output lacks %q:\n%s", want, te.out.String())
	}

	// The same command again finds the runs complete and reports the same.
	made = nil
	if code := te.run(net, args...); code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, te.errb.String())
	}
	if n := strings.Count(te.out.String(), "the run was complete"); n != 3 {
		t.Errorf("rerun: %d runs found complete, want 3:\n%s", n, te.out.String())
	}
	for _, m := range made {
		if len(m.losses) != 0 {
			t.Errorf("rerun trained %d steps", len(m.losses))
		}
	}
	if !strings.Contains(te.out.String(), want) {
		t.Errorf("rerun output lacks %q:\n%s", want, te.out.String())
	}
}

func TestRunsInterruptedAndContinued(t *testing.T) {
	te := newTestEnv()
	out := t.TempDir()
	stop := make(chan struct{})
	te.notify = func() (<-chan struct{}, func()) { return stop, func() {} }
	models := 0
	stopSecond := func(m *fakeModel) {
		models++
		if models == 2 {
			m.onStep = func(m *fakeModel) {
				if m.step == 4 {
					close(stop)
				}
			}
		}
	}
	args := []string{"runs", "-n", "2", "-data", "tiny", "-iters", "10", "-out", out}
	if code := te.run(tinyNet(nil, stopSecond), args...); code != exitInterrupted {
		t.Fatalf("exit %d, want %d: %s", code, exitInterrupted, te.errb.String())
	}
	if !strings.Contains(te.errb.String(), "continue the series with: trainer "+strings.Join(args, " ")) {
		t.Errorf("stderr: %s", te.errb.String())
	}
	te.notify = func() (<-chan struct{}, func()) { return nil, func() {} }
	var made []*fakeModel
	if code := te.run(tinyNet(&made, nil), args...); code != 0 {
		t.Fatalf("continue: exit %d: %s", code, te.errb.String())
	}
	if len(made) != 2 || len(made[0].losses) != 0 || len(made[1].losses) != 6 {
		t.Fatalf("continuing trained %d models; want run 0 complete and run 1 resumed at 4", len(made))
	}
	// The resumed run ends as an uninterrupted one with its seed does.
	ref := t.TempDir()
	if code := te.run(tinyNet(nil, nil), "train", "-data", "tiny", "-iters", "10", "-seed", "2", "-out", ref); code != 0 {
		t.Fatalf("reference: exit %d: %s", code, te.errb.String())
	}
	sameTensors(t, ckptPath(ref), ckptPath(filepath.Join(out, "run-1")))
}
