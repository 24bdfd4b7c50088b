package train

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/resnetc/resnetc/runtime/data"
)

// checkpointName is the file name of a run's checkpoint in its directory;
// it is replaced atomically at every save.
const checkpointName = "checkpoint.safetensors"

// train is the train command.
func (e *env) train(net Network, args []string) error {
	fs := e.newFlagSet("train", "[flags]", "Trains the network with SGD (momentum "+fmt.Sprint(net.Momentum)+
		", weight decay "+fmt.Sprint(net.WeightDecay)+", compiled in) and writes checkpoints, metrics.jsonl and curves.png.\n"+
		"Ctrl-C finishes the current step, saves a checkpoint and says how to resume.")
	f := addTrainFlags(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	f.set = given(fs)
	stop, release := e.notify()
	defer release()
	res, err := e.trainRun(net, f, stop)
	if errors.Is(err, errInterrupted) {
		fmt.Fprintf(e.stderr, "resume with: %s train -resume %s\n", e.prog, res.checkpoint)
	}
	return err
}

// run is one training run, set up to start or continue.
type run struct {
	net         Network
	meta        checkpointMeta // the run's definition and normalization, and the logging state
	train, test *data.Set
	out         string // output directory
	resumedFrom string // the directory of the checkpoint resumed, or ""
	m           Model
	start       int64 // iterations already done
}

// runResult is what a finished (or interrupted) run leaves.
type runResult struct {
	checkpoint string
	testError  float64 // final, in percent
}

// trainRun sets a run up from the flags and trains it to the end, or until
// stop is closed.
func (e *env) trainRun(net Network, f *trainFlags, stop <-chan struct{}) (runResult, error) {
	if err := f.check(); err != nil {
		return runResult{}, err
	}
	var r *run
	var err error
	if f.resume != "" {
		r, err = e.setupResume(net, f)
	} else {
		r, err = e.setupFresh(net, f)
	}
	if err != nil {
		return runResult{}, err
	}
	defer r.m.Close()
	return e.loop(r, stop)
}

// setupFresh prepares a new run.
func (e *env) setupFresh(net Network, f *trainFlags) (*run, error) {
	spec := f.data
	if f.set["download"] {
		p, err := e.download(f.download, e.stderr)
		if err != nil {
			return nil, err
		}
		spec = p
	}
	train, test, err := e.loadData(spec, f.coarse)
	if err != nil {
		return nil, err
	}
	if err := checkData(net, train, test); err != nil {
		return nil, err
	}
	hash := dataHash(train, test)
	test = firstImages(test, f.testImages)
	cfg := runConfig{
		Data: spec, Dataset: train.Name, DataHash: hash, Coarse: f.coarse,
		Iters: f.iters, LR: f.lr, Schedule: f.schedule, Warmup: f.warmup, WarmupLR: f.warmupLR,
		Seed: f.seed, Threads: f.threads, Augment: f.augment,
		EvalEvery: f.evalEvery, LogEvery: f.logEvery, CkptEvery: f.ckptEvery,
	}
	if f.set["epochs"] {
		if cfg.Iters, err = itersOf(f.epochs, train.N, net.Batch); err != nil {
			return nil, err
		}
	}
	if cfg.Schedule == ScheduleStep {
		if f.set["milestones"] {
			cfg.Milestones, _ = parseInts(f.milestones)
		} else {
			cfg.Milestones = defaultMilestones(cfg.Iters, f.set["iters"] || f.set["epochs"])
		}
	}
	if err := cfg.schedule().Validate(); err != nil {
		return nil, usageError{err.Error()}
	}
	mean, std := data.ChannelStats(train)
	out := f.out
	if out == "" {
		out = filepath.Join("runs", net.Name+"-"+e.now().Format("20060102-150405"))
	}
	ckpt := filepath.Join(out, checkpointName)
	if _, err := os.Stat(ckpt); err == nil {
		return nil, fmt.Errorf("%s already holds a run's checkpoint: continue it with -resume %s, or give another -out", out, ckpt)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	m, err := net.New(cfg.Threads, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("creating network %s: %v", net.Name, err)
	}
	return &run{
		net:   net,
		meta:  checkpointMeta{cfg: cfg, mean: mean, std: std, classNames: train.ClassNames},
		train: train, test: test, out: out, m: m,
	}, nil
}

// setupResume prepares the continuation of the run of a checkpoint. The
// flags that define a run (the data, -coarse, -iters or -epochs, -lr,
// -schedule, -milestones, -warmup, -warmup-lr, -seed, -augment) are taken
// from the checkpoint; given again, they must match it. The data is
// recognised by its checksum, so it may have moved. -threads may differ,
// with a warning: the run then continues, but not bit for bit. -eval-every,
// -log-every and -ckpt-every are as the run had them unless given.
func (e *env) setupResume(net Network, f *trainFlags) (*run, error) {
	meta, err := readMeta(f.resume)
	if err != nil {
		return nil, err
	}
	if err := checkNetwork(f.resume, meta, net); err != nil {
		return nil, err
	}
	cm, err := decodeCheckpointMeta(meta, net)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.resume, err)
	}
	cfg := &cm.cfg
	differs := func(flag string, got, want any) error {
		return usageError{fmt.Sprintf("-%s %v differs from the checkpoint's %v: a resumed run keeps its definition (drop the flag, or start a new run)", flag, got, want)}
	}
	for _, c := range []struct {
		flag      string
		got, want any
	}{
		{"coarse", f.coarse, cfg.Coarse},
		{"iters", f.iters, cfg.Iters},
		{"lr", f.lr, cfg.LR},
		{"schedule", f.schedule, cfg.Schedule},
		{"warmup", f.warmup, cfg.Warmup},
		{"warmup-lr", f.warmupLR, cfg.WarmupLR},
		{"seed", f.seed, cfg.Seed},
		{"augment", f.augment, cfg.Augment},
	} {
		if f.set[c.flag] && c.got != c.want {
			return nil, differs(c.flag, c.got, c.want)
		}
	}
	if f.set["milestones"] {
		ms, _ := parseInts(f.milestones)
		if !slices.Equal(ms, cfg.Milestones) {
			return nil, differs("milestones", f.milestones, joinInts(cfg.Milestones))
		}
	}
	spec, from := cfg.Data, "the run's dataset "+cfg.Data
	switch {
	case f.set["download"]:
		if spec, err = e.download(f.download, e.stderr); err != nil {
			return nil, err
		}
		from = "-download " + f.download + " (" + spec + ")"
	case f.set["data"]:
		spec, from = f.data, "-data "+f.data
	}
	train, test, err := e.loadData(spec, cfg.Coarse)
	if err != nil {
		if !f.set["data"] && !f.set["download"] {
			return nil, fmt.Errorf("%v (the checkpoint's dataset; if it moved, give -data)", err)
		}
		return nil, err
	}
	if err := checkData(net, train, test); err != nil {
		return nil, err
	}
	if h := dataHash(train, test); h != cfg.DataHash {
		return nil, fmt.Errorf("%s is not the data the run was trained on: checksum %s, the checkpoint's %s", from, h, cfg.DataHash)
	}
	test = firstImages(test, f.testImages)
	cfg.Data = spec
	if f.set["epochs"] {
		it, err := itersOf(f.epochs, train.N, net.Batch)
		if err != nil {
			return nil, err
		}
		if it != cfg.Iters {
			return nil, differs("epochs", fmt.Sprintf("%v (%d iterations)", f.epochs, it), fmt.Sprintf("%d iterations", cfg.Iters))
		}
	}
	if f.set["eval-every"] {
		cfg.EvalEvery = f.evalEvery
	}
	if f.set["log-every"] {
		cfg.LogEvery = f.logEvery
	}
	if f.set["ckpt-every"] {
		cfg.CkptEvery = f.ckptEvery
	}
	if f.set["threads"] && f.threads != cfg.Threads {
		fmt.Fprintf(e.stderr, "warning: -threads %d differs from the checkpoint's %d: the run continues, but not bit for bit as it would have\n", f.threads, cfg.Threads)
		cfg.Threads = f.threads
	}
	out := f.out
	if out == "" {
		out = filepath.Dir(f.resume)
	}
	ckpt := filepath.Join(out, checkpointName)
	if same, _ := sameFile(ckpt, f.resume); !same {
		if _, err := os.Stat(ckpt); err == nil {
			return nil, fmt.Errorf("-out %s already holds another run's checkpoint; give another -out", out)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	m, err := net.New(cfg.Threads, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("creating network %s: %v", net.Name, err)
	}
	if _, err := m.Load(f.resume); err != nil {
		m.Close()
		return nil, err
	}
	start := m.Step()
	if start < 0 || start > cfg.Iters {
		m.Close()
		return nil, fmt.Errorf("%s: step %d is not within the run's %d iterations", f.resume, start, cfg.Iters)
	}
	return &run{net: net, meta: *cm, train: train, test: test, out: out, resumedFrom: filepath.Dir(f.resume), m: m, start: start}, nil
}

// sameFile reports whether two paths name the same existing file.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// evalDue reports whether the test set is evaluated after done iterations:
// every -eval-every iterations, or by default at each epoch's end (and every
// defaultEvalCap iterations if an epoch is longer).
func evalDue(done, every int64, batch, n int) bool {
	if every > 0 {
		return done%every == 0
	}
	b, nn := int64(batch), int64(n)
	if done*b/nn > (done-1)*b/nn {
		return true
	}
	return (nn+b-1)/b > defaultEvalCap && done%defaultEvalCap == 0
}

// loop trains r from its start to its end, logging, evaluating and saving
// as its definition says.
func (e *env) loop(r *run, stop <-chan struct{}) (runResult, error) {
	net, cfg := r.net, &r.meta.cfg
	total, batch := cfg.Iters, net.Batch
	sched := cfg.schedule()
	ckpt := filepath.Join(r.out, checkpointName)
	curves := filepath.Join(r.out, "curves.png")
	res := runResult{checkpoint: ckpt}
	ml, err := openMetrics(r.out, r.resumedFrom, r.start)
	if err != nil {
		return res, fmt.Errorf("metrics: %v", err)
	}
	defer ml.Close()

	epochs := float64(total) * float64(batch) / float64(r.train.N)
	if r.start == 0 {
		aug := "no augmentation"
		if cfg.Augment {
			aug = "pad-crop-flip augmentation"
		}
		fmt.Fprintf(e.stdout, "training %s on %s (%d images; test %d): %d iterations (%.3g epochs) at batch %d, %s, seed %d, %d threads, %s\n",
			net.Name, r.train.Name, r.train.N, r.test.N, total, epochs, batch, sched, cfg.Seed, cfg.Threads, aug)
	} else {
		fmt.Fprintf(e.stdout, "resuming %s at iteration %d of %d on %s: %s, seed %d, %d threads\n",
			net.Name, r.start, total, r.train.Name, sched, cfg.Seed, cfg.Threads)
	}
	fmt.Fprintf(e.stdout, "output: %s\n", r.out)

	prog := &r.meta.progress
	if r.start == total {
		ev, err := evaluate(r.m, net, r.test, r.meta.mean, r.meta.std, e.now)
		if err != nil {
			return res, err
		}
		res.testError = ev.top1Error()
		fmt.Fprintf(e.stdout, "the run was complete: test error %.2f%% (%d/%d)\n", res.testError, ev.top1, ev.n)
		return res, nil
	}

	pad := 0
	if cfg.Augment {
		pad = augmentPad(net.Height, net.Width)
	}
	loader, err := data.NewLoader(r.train, data.LoaderOptions{
		Batch: batch, Seed: cfg.Seed, Shuffle: true, Pad: pad, Flip: cfg.Augment, Mean: r.meta.mean, Std: r.meta.std,
	})
	if err != nil {
		return res, err
	}
	defer loader.Close()
	loader.Start(r.start)

	rep := newReporter(e.stdout, e.terminal, r.start, total, net.TrainFLOPs/float64(batch))
	defer rep.finish()
	sessionStart := e.now()
	elapsedBase := prog.ElapsedS
	var stepWall time.Duration
	warnedStall, warnedPlot := false, false
	for k := r.start; k < total; k++ {
		t0 := e.now()
		kk, x, labels := loader.Next()
		if kk != k {
			panic(fmt.Sprintf("BUG: loader gave batch %d, want %d", kk, k))
		}
		lr := sched.At(k)
		loss, err := r.m.TrainStep(x, labels, float32(lr))
		if err != nil {
			return res, fmt.Errorf("iteration %d: %v", k, err)
		}
		dt := e.now().Sub(t0)
		if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
			return res, fmt.Errorf("iteration %d: the loss is %v: training diverged (a lower -lr or a -warmup may help); the last checkpoint is %s", k, loss, ckpt)
		}
		stepWall += dt
		prog.LossSum += float64(loss)
		prog.Errors += int64(batchErrors(r.m.Logits(), labels, batch, net.Classes))
		prog.Images += int64(batch)
		prog.StepS += dt.Seconds()
		rep.loss(float64(loss))

		done := k + 1
		now := e.now()
		session := now.Sub(sessionStart)
		eta := time.Duration(float64(session) / float64(done-r.start) * float64(total-done))
		rep.step(done, lr, float64(prog.Images)/max(prog.StepS, 1e-9), eta)

		evalNow := done == total || evalDue(done, cfg.EvalEvery, batch, r.train.N)
		var testErr *float64
		if evalNow {
			ev, err := evaluate(r.m, net, r.test, r.meta.mean, r.meta.std, e.now)
			if err != nil {
				return res, err
			}
			te := ev.top1Error()
			testErr, prog.TestError = &te, &te
			rep.line("iter %d/%d epoch %.2f: test error %.2f%% (%d/%d) in %s",
				done, total, float64(done)*float64(batch)/float64(r.train.N), te, ev.top1, ev.n, roundDuration(ev.dur))
		}
		if evalNow || done%cfg.LogEvery == 0 {
			steps := float64(prog.Images) / float64(batch)
			p := Point{
				Iter: done, Epoch: float64(done) * float64(batch) / float64(r.train.N),
				TrainLoss: prog.LossSum / steps, TrainError: 100 * float64(prog.Errors) / float64(prog.Images),
				TestError: testErr, LR: lr, ImagesPerS: float64(prog.Images) / max(prog.StepS, 1e-9),
				ElapsedS: elapsedBase + e.now().Sub(sessionStart).Seconds(),
			}
			if err := ml.add(p); err != nil {
				return res, fmt.Errorf("metrics: %v", err)
			}
			rep.point(p, eta)
			prog.LossSum, prog.Errors, prog.Images, prog.StepS = 0, 0, 0, 0
		}
		if evalNow {
			if err := WriteCurves(curves, net.Name+": test error (solid), training loss (dashed)", ml.points); err != nil && !warnedPlot {
				rep.line("warning: curves not drawn: %v", err)
				warnedPlot = true
			}
		}
		if w := loader.Waited(); !warnedStall && stalled(w, stepWall, done-r.start, e.stallShare) {
			rep.line("warning: the steps waited %s of %s for data (%.0f%%): the batch pipeline is too slow on this machine (fewer -threads leaves it more CPU)",
				roundDuration(w), roundDuration(stepWall), 100*float64(w)/float64(stepWall))
			warnedStall = true
		}
		stopped := false
		select {
		case <-stop:
			stopped = true
		default:
		}
		if done%cfg.CkptEvery == 0 || done == total || stopped {
			prog.ElapsedS = elapsedBase + e.now().Sub(sessionStart).Seconds()
			if err := r.m.Save(ckpt, r.meta.encode()); err != nil {
				return res, fmt.Errorf("saving the checkpoint: %v", err)
			}
		}
		if stopped {
			rep.finish()
			fmt.Fprintf(e.stderr, "interrupted at iteration %d of %d: checkpoint saved to %s\n", done, total, ckpt)
			return res, errInterrupted
		}
	}
	rep.finish()
	if prog.TestError == nil {
		panic("BUG: the last iteration was not evaluated")
	}
	res.testError = *prog.TestError
	fmt.Fprintf(e.stdout, "done: %d iterations in %s; test error %.2f%%\ncheckpoint %s\nmetrics %s\ncurves %s\n",
		total, roundDuration(time.Duration(prog.ElapsedS*float64(time.Second))), res.testError, ckpt, ml.path, curves)
	return res, nil
}

// stalled reports whether steps (taking stepWall in all, data waits
// included) waited for data long enough to warn: over a second, and more
// than share of the time, after the first 20 steps (the pipeline fills up
// at the start).
func stalled(waited, stepWall time.Duration, steps int64, share float64) bool {
	return steps >= 20 && waited > time.Second && float64(waited) > share*float64(stepWall)
}

// evalResult counts the errors of a pass over a test set.
type evalResult struct {
	n, top1, top5 int // images, top-1 errors, top-5 errors
	dur           time.Duration
}

func (r evalResult) top1Error() float64 { return 100 * float64(r.top1) / float64(r.n) }
func (r evalResult) top5Error() float64 { return 100 * float64(r.top5) / float64(r.n) }

// evaluate runs inference over the test set in order and counts the images
// whose label is not the top class (top1) and not among the top 5 (top5).
func evaluate(m Model, net Network, s *data.Set, mean, std []float32, now func() time.Time) (evalResult, error) {
	var res evalResult
	t0 := now()
	err := data.EvalBatches(s, net.Batch, mean, std, func(x []float32, labels []int32, n int) error {
		logits, err := m.Infer(x)
		if err != nil {
			return err
		}
		if len(logits) < n*net.Classes {
			panic(fmt.Sprintf("BUG: %s: Infer gave %d logits for %d images of %d classes", net.Name, len(logits), n, net.Classes))
		}
		for i := range n {
			r := rank(logits[i*net.Classes:(i+1)*net.Classes], labels[i])
			if r > 0 {
				res.top1++
			}
			if r >= 5 {
				res.top5++
			}
		}
		res.n += n
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("evaluating on %s: %v", s.Name, err)
	}
	if res.n != s.N {
		panic(fmt.Sprintf("BUG: evaluated %d of the %d images of %s", res.n, s.N, s.Name))
	}
	res.dur = now().Sub(t0)
	return res, nil
}
