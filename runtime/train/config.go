package train

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"math"
	"os"
	goruntime "runtime"
	"slices"
	"strings"

	"github.com/resnetc/resnetc/runtime/data"
)

// The paper's CIFAR recipe: 64k iterations, the rate divided by 10 at 32k
// and 48k.
const (
	paperIters = 64000
	paperLR    = 0.1
)

var paperMilestones = []int64{32000, 48000}

// Defaults of the flags that are not the paper's.
const (
	defaultCkptEvery = 1000
	defaultLogEvery  = 100
	defaultEvalCap   = 1000 // evaluate at least this often when an epoch is longer
)

// augmentPad is the padding before the random crop: the paper's 4 pixels on
// CIFAR's 32, an eighth of the image side (at least 1) in general.
func augmentPad(h, w int) int {
	return max(1, min(h, w)/8)
}

// Metadata keys the trainer adds to a checkpoint, beside the network's own.
const (
	metaRun        = "run"         // the run's definition, JSON (runConfig)
	metaMean       = "mean"        // per-channel input mean (0-255), comma-separated
	metaStd        = "std"         // per-channel input standard deviation
	metaClassNames = "class_names" // JSON list, when the dataset names its classes
	metaProgress   = "progress"    // the logging accumulators, JSON (progressState)
)

// trainFlags are the flags of train and runs.
type trainFlags struct {
	data, download string
	coarse         bool
	iters          int64
	epochs         float64
	lr             float64
	schedule       string
	milestones     string
	warmup         int64
	warmupLR       float64
	seed           uint64
	threads        int
	augment        bool
	out            string
	ckptEvery      int64
	resume         string
	evalEvery      int64
	logEvery       int64
	testImages     int

	set map[string]bool // the flags given on the command line
}

// addTrainFlags defines the training flags on fs.
func addTrainFlags(fs *flagSet) *trainFlags {
	f := &trainFlags{}
	fs.StringVar(&f.data, "data", "synthetic", "dataset: synthetic, or the path of a CIFAR-10/100 binary release (.tar.gz or folder)")
	fs.StringVar(&f.download, "download", "", "fetch cifar-10 or cifar-100 into the user cache, then train on it")
	fs.BoolVar(&f.coarse, "coarse", false, "CIFAR-100: train on the 20 coarse labels")
	fs.Int64Var(&f.iters, "iters", paperIters, "training iterations, one batch each (the paper trains its CIFAR nets for 64k)")
	fs.Float64Var(&f.epochs, "epochs", 0, "train this many epochs instead of -iters")
	fs.Float64Var(&f.lr, "lr", paperLR, "base learning rate")
	fs.StringVar(&f.schedule, "schedule", ScheduleStep, "learning-rate schedule: step (divided by 10 at -milestones), cosine (half a cosine down to 0),\nor onecycle (up from lr/25 to lr over 30% of the run, then down to lr/25e4)")
	fs.StringVar(&f.milestones, "milestones", "", "step: iterations at which the rate is divided by 10 (default 32000,48000; 50% and 75% of the run when -iters or -epochs is given)")
	fs.Int64Var(&f.warmup, "warmup", 0, "iterations at -warmup-lr before the schedule (the paper warms up its 110-layer nets for 400 iterations at 0.01)")
	fs.Float64Var(&f.warmupLR, "warmup-lr", 0.01, "learning rate of the warmup")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the initialization, the shuffling and the augmentation")
	fs.IntVar(&f.threads, "threads", goruntime.GOMAXPROCS(0), "threads of the training step (results are bitwise reproducible for a seed and thread count)")
	fs.BoolVar(&f.augment, "augment", true, "augment as the paper does: pad by 4 (an eighth of the side), random crop, random horizontal flip")
	fs.StringVar(&f.out, "out", "", "output directory: checkpoint, metrics.jsonl, curves.png (default runs/NETWORK-TIME; with -resume, the checkpoint's directory)")
	fs.Int64Var(&f.ckptEvery, "ckpt-every", defaultCkptEvery, "save a checkpoint every N iterations, at the end and on Ctrl-C (with -resume, as the run did)")
	fs.StringVar(&f.resume, "resume", "", "continue the run of this checkpoint bit for bit: its data, -coarse, -iters, -lr, -schedule, -milestones, -warmup,\n-warmup-lr, -seed, -augment and -threads come from the checkpoint (given again, they must match; -threads may differ,\nat the cost of bitwise reproducibility; the data is checked by checksum and may have moved)")
	fs.Int64Var(&f.evalEvery, "eval-every", 0, "compute the test error every N iterations (default: at each epoch's end, at least every 1000; with -resume, as the run did)")
	fs.IntVar(&f.testImages, "test-images", 0, "evaluate on the first N test images only (default: all; for deep nets, whose full evaluation takes long)")
	fs.Int64Var(&f.logEvery, "log-every", defaultLogEvery, "log a metrics point (and a line when stdout is not a terminal) every N iterations (with -resume, as the run did)")
	return f
}

// check validates the flags that need no data.
func (f *trainFlags) check() error {
	switch {
	case f.threads < 1:
		return usageError{fmt.Sprintf("-threads %d: want at least 1", f.threads)}
	case f.ckptEvery < 1:
		return usageError{fmt.Sprintf("-ckpt-every %d: want at least 1", f.ckptEvery)}
	case f.logEvery < 1:
		return usageError{fmt.Sprintf("-log-every %d: want at least 1", f.logEvery)}
	case f.testImages < 0:
		return usageError{fmt.Sprintf("-test-images %d: want a positive count (or 0 for all)", f.testImages)}
	case f.evalEvery < 0:
		return usageError{fmt.Sprintf("-eval-every %d: want at least 1 (or 0 for each epoch)", f.evalEvery)}
	case f.set["iters"] && f.set["epochs"]:
		return usageError{"give -iters or -epochs, not both"}
	case f.iters < 1:
		return usageError{fmt.Sprintf("-iters %d: want at least 1", f.iters)}
	case f.set["epochs"] && (!(f.epochs > 0) || math.IsInf(f.epochs, 0)):
		return usageError{fmt.Sprintf("-epochs %v: want a positive number", f.epochs)}
	case f.set["data"] && f.set["download"]:
		return usageError{"give -data or -download, not both"}
	case f.set["download"] && f.download != "cifar-10" && f.download != "cifar-100":
		return usageError{fmt.Sprintf("-download %q: want cifar-10 or cifar-100", f.download)}
	case f.schedule != ScheduleStep && f.schedule != ScheduleCosine && f.schedule != ScheduleOneCycle:
		return usageError{fmt.Sprintf("-schedule %q: want step, cosine or onecycle", f.schedule)}
	case f.set["milestones"] && f.schedule != ScheduleStep:
		return usageError{fmt.Sprintf("-milestones apply to -schedule step, not %s", f.schedule)}
	case !(f.lr > 0) || math.IsInf(f.lr, 0):
		return usageError{fmt.Sprintf("-lr %v: want a positive learning rate", f.lr)}
	case f.warmup < 0:
		return usageError{fmt.Sprintf("-warmup %d: want 0 or more iterations", f.warmup)}
	case !(f.warmupLR > 0) || math.IsInf(f.warmupLR, 0):
		return usageError{fmt.Sprintf("-warmup-lr %v: want a positive learning rate", f.warmupLR)}
	}
	if _, err := parseInts(f.milestones); err != nil {
		return usageError{"-milestones: " + err.Error()}
	}
	return nil
}

// runConfig is what defines a training run: with the same config and thread
// count, two runs compute the same bits. It is stored in every checkpoint.
type runConfig struct {
	Data       string  `json:"data"`       // the dataset as given to -data (or the downloaded archive)
	Dataset    string  `json:"dataset"`    // its training set's name
	DataHash   string  `json:"data_hash"`  // a checksum of its images and labels
	Coarse     bool    `json:"coarse"`     // CIFAR-100 coarse labels
	Iters      int64   `json:"iters"`      // iterations of the run
	LR         float64 `json:"lr"`         // the schedule
	Schedule   string  `json:"schedule"`   //
	Milestones []int64 `json:"milestones"` //
	Warmup     int64   `json:"warmup"`     //
	WarmupLR   float64 `json:"warmup_lr"`  //
	Seed       uint64  `json:"seed"`       // initialization, shuffling and augmentation
	Threads    int     `json:"threads"`    // the step's threads (its reductions depend on them)
	Augment    bool    `json:"augment"`    // pad-crop-flip

	// How the run reports and saves: taken from the checkpoint on a
	// resume unless given again, and then free to differ.
	EvalEvery int64 `json:"eval_every"` // 0: each epoch
	LogEvery  int64 `json:"log_every"`
	CkptEvery int64 `json:"ckpt_every"`
}

// schedule is the run's learning-rate schedule.
func (c *runConfig) schedule() Schedule {
	return Schedule{Kind: c.Schedule, LR: c.LR, Total: c.Iters, Milestones: c.Milestones, Warmup: c.Warmup, WarmupLR: c.WarmupLR}
}

// itersOf is the number of iterations of epochs passes over n images in
// batches of batch (the last one completed).
func itersOf(epochs float64, n, batch int) (int64, error) {
	it := math.Ceil(epochs * float64(n) / float64(batch))
	if it < 1 || it > math.MaxInt32*64 {
		return 0, usageError{fmt.Sprintf("-epochs %v of %d images at batch %d is %.0f iterations", epochs, n, batch, it)}
	}
	return int64(it), nil
}

// defaultMilestones are the paper's 32k and 48k of 64k, scaled to a run of
// total iterations: its 50% and 75%.
func defaultMilestones(total int64, scaled bool) []int64 {
	if !scaled {
		return slices.Clone(paperMilestones)
	}
	var ms []int64
	for _, p := range []float64{0.5, 0.75} {
		m := int64(math.Round(p * float64(total)))
		if m >= 1 && m < total && (len(ms) == 0 || m > ms[len(ms)-1]) {
			ms = append(ms, m)
		}
	}
	return ms
}

// dataHash is a checksum of a dataset's shape, images and labels: a resumed
// run checks that it trains on the same data, wherever the files now are.
func dataHash(sets ...*data.Set) string {
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	for _, s := range sets {
		var b [8]byte
		for _, d := range []int{s.N, s.C, s.H, s.W, s.Classes} {
			binary.LittleEndian.PutUint64(b[:], uint64(d))
			h.Write(b[:])
		}
		h.Write(s.Images)
		for _, l := range s.Labels {
			binary.LittleEndian.PutUint32(b[:4], uint32(l))
			h.Write(b[:4])
		}
	}
	return fmt.Sprintf("crc64:%016x", h.Sum64())
}

// checkData reports a dataset that the network cannot take.
func checkData(net Network, train, test *data.Set) error {
	for _, s := range []*data.Set{train, test} {
		if s == nil {
			return errors.New("BUG: data loader returned no set")
		}
		if s.C != net.Channels || s.H != net.Height || s.W != net.Width {
			return fmt.Errorf("%s has %dx%dx%d images; network %s takes %dx%dx%d", s.Name, s.H, s.W, s.C, net.Name, net.Height, net.Width, net.Channels)
		}
		if s.Classes != net.Classes {
			hint := ""
			if s.Classes == 100 && net.Classes == 20 {
				hint = " (add -coarse for CIFAR-100's 20 coarse labels)"
			}
			return fmt.Errorf("%s has %d classes; network %s has %d%s", s.Name, s.Classes, net.Name, net.Classes, hint)
		}
		if s.N < 1 {
			return fmt.Errorf("%s has no images", s.Name)
		}
	}
	return nil
}

// progressState is what the logging needs carried over a resume: the sums
// since the last metrics point and the elapsed time of the run.
type progressState struct {
	ElapsedS  float64  `json:"elapsed_s"`            // training time of the run so far
	LossSum   float64  `json:"loss_sum"`             // since the last metrics point
	Errors    int64    `json:"errors"`               //
	Images    int64    `json:"images"`               //
	StepS     float64  `json:"step_s"`               // seconds in steps since the last point
	TestError *float64 `json:"test_error,omitempty"` // the last one evaluated, in percent
}

// checkpointMeta is the trainer's part of a checkpoint's metadata.
type checkpointMeta struct {
	cfg        runConfig
	mean, std  []float32
	classNames []string
	progress   progressState
}

// encode returns the metadata Save stores beside the network's own.
func (c *checkpointMeta) encode() map[string]string {
	run, _ := json.Marshal(c.cfg)
	prog, _ := json.Marshal(c.progress)
	m := map[string]string{
		metaRun:      string(run),
		metaMean:     formatFloats(c.mean),
		metaStd:      formatFloats(c.std),
		metaProgress: string(prog),
	}
	if c.classNames != nil {
		names, _ := json.Marshal(c.classNames)
		m[metaClassNames] = string(names)
	}
	return m
}

// decodeNormalization reads the input statistics of a checkpoint; ok is
// false when it has none (a file not written by the trainer).
func decodeNormalization(meta map[string]string, channels int) (mean, std []float32, ok bool, err error) {
	ms, okm := meta[metaMean]
	ss, oks := meta[metaStd]
	if !okm && !oks {
		return nil, nil, false, nil
	}
	if mean, err = parseFloats(ms, channels, false); err != nil {
		return nil, nil, false, fmt.Errorf("metadata %s: %v", metaMean, err)
	}
	if std, err = parseFloats(ss, channels, true); err != nil {
		return nil, nil, false, fmt.Errorf("metadata %s: %v", metaStd, err)
	}
	return mean, std, true, nil
}

// decodeClassNames reads the class names of a checkpoint, nil if it has
// none.
func decodeClassNames(meta map[string]string, classes int) ([]string, error) {
	s, ok := meta[metaClassNames]
	if !ok {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(s), &names); err != nil || len(names) != classes {
		return nil, fmt.Errorf("metadata %s is not a list of %d names", metaClassNames, classes)
	}
	return names, nil
}

// decodeCheckpointMeta reads everything a resumed run needs from a
// checkpoint's metadata.
func decodeCheckpointMeta(meta map[string]string, net Network) (*checkpointMeta, error) {
	run, ok := meta[metaRun]
	if !ok {
		return nil, errors.New("not a training checkpoint: its metadata has no run definition")
	}
	c := &checkpointMeta{}
	dec := json.NewDecoder(strings.NewReader(run))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.cfg); err != nil {
		return nil, fmt.Errorf("metadata %s: %v", metaRun, err)
	}
	if err := c.cfg.schedule().Validate(); err != nil {
		return nil, fmt.Errorf("metadata %s: %v", metaRun, err)
	}
	if c.cfg.Threads < 1 || c.cfg.Data == "" || c.cfg.EvalEvery < 0 || c.cfg.LogEvery < 0 || c.cfg.CkptEvery < 0 {
		return nil, fmt.Errorf("metadata %s: threads %d, data %q, eval, log and checkpoint every %d, %d, %d iterations",
			metaRun, c.cfg.Threads, c.cfg.Data, c.cfg.EvalEvery, c.cfg.LogEvery, c.cfg.CkptEvery)
	}
	if c.cfg.LogEvery == 0 {
		c.cfg.LogEvery = defaultLogEvery
	}
	if c.cfg.CkptEvery == 0 {
		c.cfg.CkptEvery = defaultCkptEvery
	}
	var err error
	var okn bool
	if c.mean, c.std, okn, err = decodeNormalization(meta, net.Channels); err != nil {
		return nil, err
	} else if !okn {
		return nil, errors.New("not a training checkpoint: its metadata has no input mean and std")
	}
	if c.classNames, err = decodeClassNames(meta, net.Classes); err != nil {
		return nil, err
	}
	if p, ok := meta[metaProgress]; ok {
		if err := json.Unmarshal([]byte(p), &c.progress); err != nil {
			return nil, fmt.Errorf("metadata %s: %v", metaProgress, err)
		}
	}
	return c, nil
}

// maxMetaHeader bounds the header readMeta accepts, as the safetensors
// reader does.
const maxMetaHeader = 100 << 20

// readMeta reads the metadata of a safetensors file from its header alone,
// without its tensors: a resumed run needs it (its thread count) before it
// can create the model that loads the tensors. The network's Load checks
// the whole file afterwards.
func readMeta(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var nb [8]byte
	if _, err := io.ReadFull(f, nb[:]); err != nil {
		return nil, fmt.Errorf("%s: not a checkpoint (too short for a safetensors header)", path)
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n < 2 || n > maxMetaHeader {
		return nil, fmt.Errorf("%s: not a checkpoint (safetensors header length %d)", path, n)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, fmt.Errorf("%s: not a checkpoint (truncated safetensors header)", path)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &top); err != nil {
		return nil, fmt.Errorf("%s: not a checkpoint (corrupt safetensors header: %v)", path, err)
	}
	meta := map[string]string{}
	if raw, ok := top["__metadata__"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("%s: corrupt safetensors metadata: %v", path, err)
		}
	}
	return meta, nil
}

// checkNetwork reports a checkpoint of another network.
func checkNetwork(path string, meta map[string]string, net Network) error {
	if n, ok := meta["network"]; ok && n != net.Name {
		return fmt.Errorf("%s is a checkpoint of network %q, not %q", path, n, net.Name)
	}
	return nil
}

// firstImages returns the first n images of s (s itself when n is 0 or
// not below its size).
func firstImages(s *data.Set, n int) *data.Set {
	if n <= 0 || n >= s.N {
		return s
	}
	c := *s
	size := s.C * s.H * s.W
	c.N, c.Images, c.Labels = n, s.Images[:n*size], s.Labels[:n]
	if s.Coarse != nil {
		c.Coarse = s.Coarse[:n]
	}
	c.Name = fmt.Sprintf("%s (first %d)", s.Name, n)
	return &c
}
