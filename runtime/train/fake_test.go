package train

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/runtime/data"
	"github.com/resnetc/resnetc/runtime/safetensors"
)

// fakeModel is a linear softmax classifier with the interface of a
// generated network: TrainStep really learns (SGD with momentum 0.9 and
// weight decay 1e-4, like the compiled step), in float32, deterministically.
type fakeModel struct {
	net     Network
	d, k    int       // inputs per image, classes
	w, b    []float32 // weights [k][d] and bias [k]
	vw, vb  []float32 // momentum
	logits  []float32
	step    int64
	threads int

	onStep func(m *fakeModel)          // called after every TrainStep
	infer  func(x []float32) []float32 // replaces inference when set
	losses []float32                   // every TrainStep's loss, in order
	batchL [][]int32                   // every TrainStep's labels
	batchZ [][]float32                 // every TrainStep's logits
	closed *bool                       // set by Close
}

// fakeNet returns a Network of fake models on h x w x c images; made lists
// the models it creates, and configure (when set) adjusts each.
func fakeNet(name string, h, w, c, classes, batch int, made *[]*fakeModel, configure func(*fakeModel)) Network {
	var mu sync.Mutex
	net := Network{
		Name: name, Arch: "linear softmax " + name,
		Batch: batch, Height: h, Width: w, Channels: c, Classes: classes,
		TrainFLOPs: float64(6 * batch * h * w * c * classes), Momentum: 0.9, WeightDecay: 1e-4,
	}
	net.New = func(threads int, seed uint64) (Model, error) {
		if threads < 1 {
			return nil, fmt.Errorf("%d threads", threads)
		}
		d := h * w * c
		m := &fakeModel{net: net, d: d, k: classes, threads: threads,
			w: make([]float32, classes*d), b: make([]float32, classes),
			vw: make([]float32, classes*d), vb: make([]float32, classes),
			logits: make([]float32, batch*classes), closed: new(bool)}
		m.Init(seed)
		if configure != nil {
			configure(m)
		}
		mu.Lock()
		if made != nil {
			*made = append(*made, m)
		}
		mu.Unlock()
		return m, nil
	}
	return net
}

func (m *fakeModel) Init(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range m.w {
		m.w[i] = float32(r.NormFloat64() * 0.01)
	}
	clear(m.b)
	clear(m.vw)
	clear(m.vb)
	m.step = 0
}

func (m *fakeModel) Step() int64     { return m.step }
func (m *fakeModel) SetStep(n int64) { m.step = n }
func (m *fakeModel) Logits() []float32 {
	return m.logits
}
func (m *fakeModel) Close() { *m.closed = true }

func (m *fakeModel) forward(x []float32) {
	for i := range m.net.Batch {
		xi := x[i*m.d : (i+1)*m.d]
		for c := range m.k {
			z := m.b[c]
			for j, v := range m.w[c*m.d : (c+1)*m.d] {
				z += v * xi[j]
			}
			m.logits[i*m.k+c] = z
		}
	}
}

func (m *fakeModel) check(x []float32, labels []int32) error {
	if len(x) != m.net.Batch*m.d {
		return fmt.Errorf("batch of %d float32s, want %d", len(x), m.net.Batch*m.d)
	}
	if labels != nil && len(labels) != m.net.Batch {
		return fmt.Errorf("%d labels", len(labels))
	}
	for _, l := range labels {
		if l < 0 || int(l) >= m.k {
			return fmt.Errorf("label %d", l)
		}
	}
	return nil
}

func (m *fakeModel) TrainStep(x []float32, labels []int32, lr float32) (float32, error) {
	if err := m.check(x, labels); err != nil {
		return 0, err
	}
	m.forward(x)
	B := m.net.Batch
	g := make([]float32, B*m.k)
	var loss float32
	for i := range B {
		row := m.logits[i*m.k : (i+1)*m.k]
		mx := slices.Max(row)
		var z float32
		for _, v := range row {
			z += float32(math.Exp(float64(v - mx)))
		}
		for c, v := range row {
			p := float32(math.Exp(float64(v-mx))) / z
			if int32(c) == labels[i] {
				loss -= float32(math.Log(float64(p)))
				p--
			}
			g[i*m.k+c] = p / float32(B)
		}
	}
	loss /= float32(B)
	for c := range m.k {
		var gb float32
		for i := range B {
			gb += g[i*m.k+c]
		}
		m.vb[c] = 0.9*m.vb[c] + gb + 1e-4*m.b[c]
		m.b[c] -= lr * m.vb[c]
		for j := range m.d {
			var gw float32
			for i := range B {
				gw += g[i*m.k+c] * x[i*m.d+j]
			}
			at := c*m.d + j
			m.vw[at] = 0.9*m.vw[at] + gw + 1e-4*m.w[at]
			m.w[at] -= lr * m.vw[at]
		}
	}
	m.step++
	m.losses = append(m.losses, loss)
	m.batchL = append(m.batchL, slices.Clone(labels))
	m.batchZ = append(m.batchZ, slices.Clone(m.logits))
	if m.onStep != nil {
		m.onStep(m)
	}
	return loss, nil
}

func (m *fakeModel) Infer(x []float32) ([]float32, error) {
	if err := m.check(x, nil); err != nil {
		return nil, err
	}
	if m.infer != nil {
		copy(m.logits, m.infer(x))
		return m.logits, nil
	}
	m.forward(x)
	return m.logits, nil
}

func (m *fakeModel) tensors() []safetensors.Tensor {
	return []safetensors.Tensor{
		safetensors.F32("w", []int{m.k, m.d}, m.w), safetensors.F32("b", []int{m.k}, m.b),
		safetensors.F32("w.momentum", []int{m.k, m.d}, m.vw), safetensors.F32("b.momentum", []int{m.k}, m.vb),
	}
}

func (m *fakeModel) Save(path string, extra map[string]string) error {
	meta := map[string]string{"format": "resnetc", "network": m.net.Name, "arch": m.net.Arch, "step": strconv.FormatInt(m.step, 10)}
	for k, v := range extra {
		if _, ok := meta[k]; ok {
			return fmt.Errorf("reserved key %q", k)
		}
		meta[k] = v
	}
	return safetensors.WriteFile(path, m.tensors(), meta)
}

func (m *fakeModel) Load(path string) (map[string]string, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if n := f.Metadata["network"]; n != m.net.Name {
		return nil, fmt.Errorf("%s: a checkpoint of network %q, not %q", path, n, m.net.Name)
	}
	step, err := strconv.ParseInt(f.Metadata["step"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: bad step", path)
	}
	for _, t := range m.tensors() {
		ft, ok := f.Tensor(t.Name)
		if !ok || !slices.Equal(ft.Shape, t.Shape) {
			return nil, fmt.Errorf("%s: no tensor %q of shape %v", path, t.Name, t.Shape)
		}
	}
	dst := map[string][]float32{"w": m.w, "b": m.b, "w.momentum": m.vw, "b.momentum": m.vb}
	for name, d := range dst {
		ft, _ := f.Tensor(name)
		if err := ft.Float32s(d); err != nil {
			return nil, err
		}
	}
	m.step = step
	return f.Metadata, nil
}

// tinySets returns a learnable dataset of h x w x 3 images: each class is a
// random template, each image its class's template plus noise.
func tinySets(name string, seed uint64, h, w, classes, nTrain, nTest int) (train, test *data.Set) {
	r := rand.New(rand.NewPCG(seed, 1))
	size := 3 * h * w
	tmpl := make([][]float64, classes)
	for c := range tmpl {
		tmpl[c] = make([]float64, size)
		for j := range tmpl[c] {
			tmpl[c][j] = 40 + 170*r.Float64()
		}
	}
	names := make([]string, classes)
	for c := range names {
		names[c] = fmt.Sprintf("kind%d", c)
	}
	mk := func(part string, n int) *data.Set {
		s := &data.Set{Name: name + "/" + part, N: n, C: 3, H: h, W: w, Classes: classes, ClassNames: names,
			Images: make([]byte, n*size), Labels: make([]int32, n)}
		for i := range n {
			c := r.IntN(classes)
			s.Labels[i] = int32(c)
			for j := range size {
				v := tmpl[c][j] + 45*r.NormFloat64()
				s.Images[i*size+j] = byte(max(0, min(255, math.Round(v))))
			}
		}
		return s
	}
	return mk("train", nTrain), mk("test", nTest)
}

// testEnv is an env writing to buffers, whose data specs "tiny" and others
// the test registers resolve to in-memory sets; other specs go to
// runtime/data.
type testEnv struct {
	*env
	out, errb bytes.Buffer
	sets      map[string][2]*data.Set
	loads     int
}

func newTestEnv() *testEnv {
	te := &testEnv{sets: map[string][2]*data.Set{}}
	tr, ts := tinySets("tiny", 42, 4, 4, 4, 96, 40)
	te.sets["tiny"] = [2]*data.Set{tr, ts}
	te.env = &env{
		prog:   "trainer",
		stdout: &te.out, stderr: &te.errb,
		notify: func() (<-chan struct{}, func()) { return nil, func() {} },
		loadData: func(spec string, coarse bool) (*data.Set, *data.Set, error) {
			te.loads++
			if s, ok := te.sets[spec]; ok {
				return s[0], s[1], nil
			}
			return data.Load(spec, data.LoadOptions{Coarse: coarse})
		},
		download: func(name string, _ io.Writer) (string, error) {
			return "", errors.New("download " + name + ": no network here")
		},
		now:        time.Now,
		stallShare: 0.1,
	}
	return te
}

// run runs the command line and returns its exit status, resetting the
// output buffers first.
func (te *testEnv) run(net Network, args ...string) int {
	te.out.Reset()
	te.errb.Reset()
	return te.main(net, args)
}

// tinyNet is the network of the tiny sets: 4x4x3 images, 4 classes, batch 8.
func tinyNet(made *[]*fakeModel, configure func(*fakeModel)) Network {
	return fakeNet("tiny-linear", 4, 4, 3, 4, 8, made, configure)
}

// readCheckpoint reads a checkpoint's file, failing the test on an error.
func readCheckpoint(t *testing.T, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// ckptPath is the checkpoint of a run directory.
func ckptPath(dir string) string { return filepath.Join(dir, checkpointName) }

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var ls []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(l) != "" {
			ls = append(ls, l)
		}
	}
	return ls
}
