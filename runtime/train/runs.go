package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/resnetc/resnetc/runtime/data"
)

// RunsReport is the content of runs.json: each training of a runs command
// and the summary of their final test errors (in percent).
type RunsReport struct {
	Network   string     `json:"network"`
	Runs      []RunEntry `json:"runs"`
	TestError Summary    `json:"test_error"`
}

// RunEntry is one training of a runs command.
type RunEntry struct {
	Seed       uint64  `json:"seed"`
	Dir        string  `json:"dir"`
	TestError  float64 `json:"test_error"`
	Checkpoint string  `json:"checkpoint"`
}

// runs is the runs command: the paper's protocol of N trainings with
// different seeds, reported as their median and mean±std. Run i trains with
// seed -seed+i into -out/run-i; a run directory that already holds a
// checkpoint is resumed (or, complete, just evaluated), so the same command
// continues an interrupted series.
func (e *env) runs(net Network, args []string) error {
	fs := e.newFlagSet("runs", "-n 5 [train flags]",
		"Trains the network N times with seeds -seed ... -seed+N-1, in sequence, into -out/run-i, then prints the median and\n"+
			"mean±std of the final test error and writes -out/runs.json. Rerunning the same command continues an interrupted series.")
	f := addTrainFlags(fs)
	n := fs.Int("n", 5, "number of trainings (the paper reports the median of 5)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	f.set = given(fs)
	switch {
	case *n < 1:
		return usageError{fmt.Sprintf("-n %d: want at least 1", *n)}
	case f.resume != "":
		return usageError{"-resume applies to train; to continue a series, rerun runs with the same -out"}
	}
	if err := f.check(); err != nil {
		return err
	}
	out := f.out
	if out == "" {
		out = filepath.Join("runs", net.Name+"-runs-"+e.now().Format("20060102-150405"))
	}
	// Every run trains on the same data: load it once.
	type key struct {
		spec   string
		coarse bool
	}
	type sets struct{ train, test *data.Set }
	loaded := map[key]sets{}
	re := *e
	re.loadData = func(spec string, coarse bool) (*data.Set, *data.Set, error) {
		if s, ok := loaded[key{spec, coarse}]; ok {
			return s.train, s.test, nil
		}
		train, test, err := e.loadData(spec, coarse)
		if err == nil {
			loaded[key{spec, coarse}] = sets{train, test}
		}
		return train, test, err
	}
	stop, release := e.notify()
	defer release()
	report := RunsReport{Network: net.Name}
	var errs []float64
	for i := range *n {
		fi := *f
		fi.set = maps.Clone(f.set)
		fi.seed = f.seed + uint64(i)
		fi.out = filepath.Join(out, fmt.Sprintf("run-%d", i))
		fi.set["seed"], fi.set["out"] = true, true
		ckpt := filepath.Join(fi.out, checkpointName)
		if _, err := os.Stat(ckpt); err == nil {
			fi.resume = ckpt
		}
		fmt.Fprintf(e.stdout, "run %d of %d: seed %d, in %s\n", i+1, *n, fi.seed, fi.out)
		res, err := re.trainRun(net, &fi, stop)
		if errors.Is(err, errInterrupted) {
			cont := strings.Join(append([]string{e.prog, "runs"}, args...), " ")
			if !f.set["out"] {
				cont += " -out " + out
			}
			fmt.Fprintf(e.stderr, "continue the series with: %s\n", cont)
			return err
		}
		if err != nil {
			return fmt.Errorf("run %d (seed %d): %w", i, fi.seed, err)
		}
		report.Runs = append(report.Runs, RunEntry{Seed: fi.seed, Dir: fi.out, TestError: res.testError, Checkpoint: res.checkpoint})
		errs = append(errs, res.testError)
	}
	report.TestError = Summarize(errs)
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		panic("BUG: runs report does not encode: " + err.Error())
	}
	path := filepath.Join(out, "runs.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	s := report.TestError
	fmt.Fprintf(e.stdout, "test error over %d runs (seeds %d to %d):", s.N, f.seed, f.seed+uint64(*n)-1)
	for _, r := range report.Runs {
		fmt.Fprintf(e.stdout, " %.2f", r.TestError)
	}
	fmt.Fprintf(e.stdout, "\nmedian %.2f%%, mean %.2f±%.2f%% (min %.2f, max %.2f)\nreport %s\n", s.Median, s.Mean, s.Std, s.Min, s.Max, path)
	return nil
}
