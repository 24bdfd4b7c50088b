package train

import (
	"encoding/json"
	"fmt"
	goruntime "runtime"

	"github.com/resnetc/resnetc/runtime/data"
)

// eval is the eval command: the test error of a checkpoint.
func (e *env) eval(net Network, args []string) error {
	fs := e.newFlagSet("eval", "-ckpt PATH [flags]", "Computes the top-1 test error of a checkpoint (and the top-5 error when there are more than 10 classes).")
	ckpt := fs.String("ckpt", "", "the checkpoint to evaluate (required)")
	spec := fs.String("data", "", "dataset: synthetic or a CIFAR path (default: the one the checkpoint was trained on)")
	coarse := fs.Bool("coarse", false, "CIFAR-100: the 20 coarse labels (default: as trained)")
	threads := fs.Int("threads", goruntime.GOMAXPROCS(0), "threads of inference")
	if err := fs.parse(args); err != nil {
		return err
	}
	set := given(fs)
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	case *ckpt == "":
		return usageError{"-ckpt is required"}
	case *threads < 1:
		return usageError{fmt.Sprintf("-threads %d: want at least 1", *threads)}
	}
	meta, err := readMeta(*ckpt)
	if err != nil {
		return err
	}
	if err := checkNetwork(*ckpt, meta, net); err != nil {
		return err
	}
	cfg, err := trainedOn(*ckpt, meta)
	if err != nil {
		return err
	}
	if set["data"] {
		cfg.Data = *spec
	}
	if set["coarse"] {
		cfg.Coarse = *coarse
	}
	train, test, err := e.loadData(cfg.Data, cfg.Coarse)
	if err != nil {
		return err
	}
	if err := checkData(net, train, test); err != nil {
		return err
	}
	mean, std, ok, err := decodeNormalization(meta, net.Channels)
	if err != nil {
		return fmt.Errorf("%s: %v", *ckpt, err)
	}
	if !ok {
		mean, std = data.ChannelStats(train)
		fmt.Fprintf(e.stderr, "note: %s holds no input statistics; normalizing with those of %s\n", *ckpt, train.Name)
	}
	m, err := net.New(*threads, 0)
	if err != nil {
		return fmt.Errorf("creating network %s: %v", net.Name, err)
	}
	defer m.Close()
	if _, err := m.Load(*ckpt); err != nil {
		return err
	}
	ev, err := evaluate(m, net, test, mean, std, e.now)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s at step %d on %s (%d images): test error %.2f%% (%d/%d)",
		net.Name, m.Step(), test.Name, ev.n, ev.top1Error(), ev.top1, ev.n)
	if net.Classes > 10 {
		fmt.Fprintf(e.stdout, ", top-5 %.2f%% (%d/%d)", ev.top5Error(), ev.top5, ev.n)
	}
	if s := ev.dur.Seconds(); s > 0 {
		fmt.Fprintf(e.stdout, ", %.0f images/s", float64(ev.n)/s)
	}
	fmt.Fprintln(e.stdout)
	return nil
}

// trainedOn returns the run definition of a checkpoint's metadata: its data
// and labels, or synthetic data when the file does not say.
func trainedOn(path string, meta map[string]string) (runConfig, error) {
	cfg := runConfig{Data: "synthetic"}
	if s, ok := meta[metaRun]; ok {
		if err := json.Unmarshal([]byte(s), &cfg); err != nil || cfg.Data == "" {
			return cfg, fmt.Errorf("%s: metadata %s is corrupt", path, metaRun)
		}
	}
	return cfg, nil
}
