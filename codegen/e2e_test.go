package codegen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/interp"
	"github.com/resnetc/resnetc/ir/resnet"
	"github.com/resnetc/resnetc/passes"
)

// e2eTol is the tolerance of generated results against the interpreter
// (in float64), max-norm relative per tensor.
const e2eTol = 1e-4

// e2eNets are tiny networks covering every unit kind with every
// activation order, and every shortcut kind and both ways to grow (A,
// projection) among them: two stages on 6x6 images, one unit each.
func e2eNets(t *testing.T) []*resnet.Arch {
	kinds := []struct {
		name, stages string
		depth        int
	}{{"basic", "8 16/2", 6}, {"1-layer", "8 16/2", 4}, {"bottleneck", "32 64/2", 8}}
	orders := []string{"original", "bn-after-add", "relu-before-add", "relu-only-preact", "full-preact"}
	shortcuts := []string{"identity", "scale(0.5, 1)", "gate(-1)", "shortcut-gate(0.5)", "conv1x1", "dropout(0.3)"}
	var nets []*resnet.Arch
	i := 0
	for _, k := range kinds {
		for _, o := range orders {
			grow := "A"
			if i%2 == 1 || k.name == "bottleneck" {
				grow = "projection"
			}
			src := fmt.Sprintf("resnet tiny%d {\n input 6x6x3\n classes 3\n depth %d\n stem conv3x3 8\n unit %s order=%s shortcut=%s grow=%s\n stages %s\n}\n",
				i, k.depth, k.name, o, shortcuts[i%len(shortcuts)], grow, k.stages)
			a, err := resnet.Parse(fmt.Sprintf("tiny%d.arch", i), []byte(src))
			if err != nil {
				t.Fatalf("%s\n%v", src, err)
			}
			nets = append(nets, a)
			i++
		}
	}
	return nets
}

// e2eCase is a network and the batch it is compiled for.
type e2eCase struct {
	Arch  *resnet.Arch
	Batch int
	Steps int // training steps compared
	// Budget is the arena budget of the training step; 0 for none.
	Budget int64
}

func (c e2eCase) inputShape() ir.Shape {
	return ir.Shape{c.Batch, c.Arch.InputC, c.Arch.InputH, c.Arch.InputW}
}

// e2eMargin is the conditioning interpRun must find: no ReLU input
// closer to zero than this fraction of the largest in its tensor. The
// generated forward pass agrees with the float64 interpreter to about
// 1e-7 of that scale, so a larger margin rules out a ReLU taking the
// other branch. e2eTries bounds the batches drawn to find one.
const (
	e2eMargin = 5e-7
	e2eTries  = 40
)

// e2eCases are the e2eNets at batch 2 and two networks at the real CIFAR
// shapes, so that the kernels specialized to 32x32, 16x16 and 8x8 planes
// of 16 to 256 channels (partial tiles, stride 2, the drivers' splits of
// the work) are checked against the interpreter too: preact-resnet-20
// (3x3 kernels, option A shortcuts) and an 11-layer full pre-activation
// bottleneck net (1x1 kernels, projection shortcuts), one unit per stage,
// also at batch 1, where forward convolutions split their output channels
// over the workers.
func e2eCases(t *testing.T) []e2eCase {
	var cs []e2eCase
	for _, a := range e2eNets(t) {
		cs = append(cs, e2eCase{Arch: a, Batch: 2, Steps: 3})
	}
	// Under a memory budget: a bottleneck net of 3 units per stage whose
	// step recomputes the residual stream in every segment of 2 units
	// (and BatchNorm outputs), then one whose step recomputes whole
	// segments and a stream segment. The budgets are checked to make the
	// rematerialization recompute what they are meant to.
	for _, b := range []struct {
		budget         int64
		wholeSegments  bool
		streamSegments int
	}{{120000, false, 3}, {114000, true, 1}} {
		src := "resnet tinyremat {\n input 6x6x3\n classes 3\n depth 20\n stem conv3x3 8\n unit bottleneck order=full-preact shortcut=identity grow=projection\n stages 32 64/2\n}\n"
		a, err := resnet.Parse("tinyremat.arch", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		g, err := resnet.Lower(a, 2, ir.Train)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := passes.Run(g, passes.RunOptions{Budget: b.budget})
		if err != nil {
			t.Fatal(err)
		}
		if r := pc.Remat; r == nil || r.Stream.Segments != b.streamSegments || (len(r.Segments) > 0) != b.wholeSegments {
			t.Fatalf("budget %d: rematerialization %+v; want %d stream segments and whole segments %v", b.budget, r, b.streamSegments, b.wholeSegments)
		}
		cs = append(cs, e2eCase{Arch: a, Batch: 2, Steps: 3, Budget: b.budget})
	}
	for _, p := range []struct {
		name         string
		depth, batch int
	}{{"preact-resnet-20", 0, 2}, {"preact-resnet-bottleneck", 11, 2}, {"preact-resnet-bottleneck", 11, 1}} {
		a, err := resnet.LoadPreset(p.name)
		if err != nil {
			t.Fatal(err)
		}
		if p.depth > 0 {
			if err := a.SetDepth(p.depth); err != nil {
				t.Fatal(err)
			}
		}
		cs = append(cs, e2eCase{Arch: a, Batch: p.batch, Steps: 1})
	}
	return cs
}

// e2eInput is what the driver reads: a batch for each network.
type e2eInput struct {
	Nets    []e2eBatch
	LR      float32
	Seed    uint64
	Threads int
}

type e2eBatch struct {
	X      []float32
	Labels []int32
	Steps  int
}

// e2eResult is what the driver writes for one network.
type e2eResult struct {
	Err         string
	InferBefore []float32
	Steps       []e2eStep
	InferAfter  []float32
	Tensors     map[string][]float32 // after the last step
}

type e2eStep struct {
	Loss    float32
	Logits  []float32
	Tensors map[string][]float32
}

var driverTemplate = template.Must(template.New("driver").Parse(`package main

import (
	"encoding/json"
	"fmt"
	"os"
{{range .}}
	{{.Pkg}} "{{.Path}}"{{end}}
)

type model interface {
	TrainStep(x []float32, labels []int32, lr float32) (float32, error)
	Infer(x []float32) ([]float32, error)
	Tensor(name string) []float32
	Logits() []float32
	Close()
}

type step struct {
	Loss    float32
	Logits  []float32
	Tensors map[string][]float32
}

type result struct {
	Err         string
	InferBefore []float32
	Steps       []step
	InferAfter  []float32
}

type batch struct {
	X      []float32
	Labels []int32
	Steps  int
}

type input struct {
	Nets    []batch
	LR      float32
	Seed    uint64
	Threads int
}

func tensors(m model, names []string) map[string][]float32 {
	out := map[string][]float32{}
	for _, n := range names {
		out[n] = append([]float32(nil), m.Tensor(n)...)
	}
	return out
}

func drive(m model, err error, names []string, in input, b batch) (r result) {
	if err != nil {
		return result{Err: err.Error()}
	}
	defer m.Close()
	logits, err := m.Infer(b.X)
	if err != nil {
		return result{Err: err.Error()}
	}
	r.InferBefore = append([]float32(nil), logits...)
	for k := 0; k < b.Steps; k++ {
		loss, err := m.TrainStep(b.X, b.Labels, in.LR)
		if err != nil {
			return result{Err: err.Error()}
		}
		r.Steps = append(r.Steps, step{Loss: loss, Logits: append([]float32(nil), m.Logits()...), Tensors: tensors(m, names)})
	}
	logits, err = m.Infer(b.X)
	if err != nil {
		return result{Err: err.Error()}
	}
	r.InferAfter = append([]float32(nil), logits...)
	return r
}

func main() {
	var in input
	data, err := os.ReadFile(os.Args[1])
	if err == nil {
		err = json.Unmarshal(data, &in)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var out []result
{{range $i, $p := .}}	{
		m, err := {{$p.Pkg}}.New(in.Threads, in.Seed)
		out = append(out, drive(m, err, {{$p.Pkg}}.TensorNames(), in, in.Nets[{{$i}}]))
	}
{{end}}	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`))

// TestGeneratedMatchesInterpreter compiles the e2eCases into packages,
// runs them (Infer, the case's TrainSteps, Infer) in a driver program,
// with the assembly and with -tags purego, on 1 and 2 threads, and
// compares every result with the reference interpreter in float64 running
// the unfused graphs (lowering and autodiff only): the logits, the loss, the logits
// of every step and every param and state tensor after every step (the
// momentum after the first step from zero momentum is the gradient plus
// weight decay, so every gradient is compared), within e2eTol.
func TestGeneratedMatchesInterpreter(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and runs generated packages")
	}
	nets := e2eCases(t)
	dir, err := os.MkdirTemp(".", "_e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	type pkgRef struct{ Pkg, Path string }
	var refs []pkgRef
	winograd, units := 0, 0
	for i, c := range nets {
		name := fmt.Sprintf("net%d", i)
		p, err := Compile(c.Arch, Options{Package: name, Batch: c.Batch, Budget: c.Budget})
		if err != nil {
			t.Fatalf("%s: %v", c.Arch.Name, err)
		}
		if p.Files["kernels_winograd.go"] != nil {
			winograd++
		}
		if bytes.Contains(p.Files["infer.go"], []byte("m.unitFwd(")) {
			units++
		}
		if err := p.WriteDir(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, pkgRef{name, "github.com/resnetc/resnetc/codegen/" + filepath.Base(dir) + "/" + name})
	}
	// Inference runs its stride-1 3x3 convolutions by Winograd where the
	// batch has two images or more: the comparison covers it.
	if winograd == 0 {
		t.Fatal("no generated package has Winograd kernels")
	}
	// Inference runs bottleneck units image by image where it can.
	if units == 0 {
		t.Fatal("no generated package runs a unit's convolutions image by image")
	}
	if err := os.MkdirAll(filepath.Join(dir, "driver"), 0o755); err != nil {
		t.Fatal(err)
	}
	var src bytes.Buffer
	if err := driverTemplate.Execute(&src, refs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "driver", "main.go"), src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	in := e2eInput{LR: 0.1, Seed: 7, Nets: make([]e2eBatch, len(nets))}
	want := make([]*e2eResult, len(nets))
	for i, c := range nets {
		// Draw batches until one is well conditioned (see interpRun).
		r := newRand(uint64(1 + i))
		for try := 0; ; try++ {
			if try == e2eTries {
				t.Fatalf("%s: no well-conditioned batch in %d tries", c.Arch.Name, e2eTries)
			}
			b := e2eBatch{X: make([]float32, c.inputShape().Elems()), Steps: c.Steps}
			for j := range b.X {
				b.X[j] = float32(r.normal())
			}
			for range c.Batch {
				b.Labels = append(b.Labels, int32(r.next()%uint64(c.Arch.Classes)))
			}
			res, margin := interpRun(t, c, b, in)
			if margin >= e2eMargin {
				in.Nets[i], want[i] = b, res
				break
			}
		}
	}

	for _, tags := range []string{"", "purego"} {
		bin := filepath.Join(dir, "bin-"+tags)
		args := []string{"build", "-o", bin}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		cmd := exec.Command("go", append(args, "./"+filepath.Join(dir, "driver"))...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", tags, err, out)
		}
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("tags=%s/threads=%d", tags, threads), func(t *testing.T) {
				in := in
				in.Threads = threads
				data, _ := json.Marshal(in)
				inPath := filepath.Join(dir, fmt.Sprintf("in%s%d.json", tags, threads))
				if err := os.WriteFile(inPath, data, 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(bin, inPath).Output()
				if err != nil {
					t.Fatalf("driver: %v", err)
				}
				var got []e2eResult
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatal(err)
				}
				for i, c := range nets {
					compareE2E(t, c.Arch, in.LR, &got[i], want[i])
				}
			})
		}
	}
}

// interpRun computes what a generated package must: the reference
// interpreter in float64 on the lowered graphs (autodiff on the training
// one, no other pass), starting from the initial weights rounded to
// float32 as the package stores them. It also returns the conditioning of
// the run: the smallest |z|/max|z| over the inputs z of every ReLU of
// every step. A ReLU input within rounding of zero may fall on the other
// side in float32, which changes that element's gradient by its whole
// value (the backward pass is not continuous there), so such a batch is
// not a fair test of the gradients.
func interpRun(t *testing.T, c e2eCase, b e2eBatch, in e2eInput) (*e2eResult, float64) {
	t.Helper()
	gi, err := resnet.Lower(c.Arch, c.Batch, ir.Infer)
	if err != nil {
		t.Fatal(err)
	}
	gt, err := resnet.Lower(c.Arch, c.Batch, ir.Train)
	if err != nil {
		t.Fatal(err)
	}
	if err := passes.Autodiff(gt); err != nil {
		t.Fatal(err)
	}
	feeds := interp.Init(gt, in.Seed)
	for _, v := range feeds {
		for i, x := range v.Data {
			v.Data[i] = float64(float32(x))
		}
	}
	x := &interp.Tensor{Shape: c.inputShape()}
	for _, v := range b.X {
		x.Data = append(x.Data, float64(v))
	}
	labels := &interp.Tensor{Shape: ir.Shape{c.Batch}}
	for _, v := range b.Labels {
		labels.Data = append(labels.Data, float64(v))
	}
	lr := &interp.Tensor{Shape: ir.Shape{}, Data: []float64{float64(in.LR)}}
	var opt interp.Options
	infer := func() []float32 {
		f := map[string]*interp.Tensor{"x": x}
		for k, v := range feeds {
			f[k] = v
		}
		res, err := interp.Run(gi, f, opt)
		if err != nil {
			t.Fatal(err)
		}
		return f32(res.Outputs["logits"])
	}
	want := &e2eResult{InferBefore: infer()}
	margin := math.Inf(1)
	for k := 0; k < b.Steps; k++ {
		f := map[string]*interp.Tensor{"x": x, "labels": labels, "lr": lr}
		for n, v := range feeds {
			f[n] = v
		}
		opt.Step = int64(k)
		res, err := interp.Run(gt, f, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range gt.Ops {
			if op != nil && op.Kind == ir.ReLU {
				z := res.Values[op.Args[0]].Data
				var top float64
				for _, v := range z {
					top = max(top, math.Abs(v))
				}
				for _, v := range z {
					if top > 0 {
						margin = min(margin, math.Abs(v)/top)
					}
				}
			}
		}
		for n, v := range res.Updates {
			feeds[n] = v
		}
		s := e2eStep{Loss: f32(res.Outputs["loss"])[0], Logits: f32(res.Outputs["logits"]), Tensors: map[string][]float32{}}
		for n, v := range feeds {
			s.Tensors[n] = f32(v)
		}
		want.Steps = append(want.Steps, s)
	}
	opt.Step = 0
	want.InferAfter = infer()
	return want, margin
}

func f32(t *interp.Tensor) []float32 {
	out := make([]float32, len(t.Data))
	for i, v := range t.Data {
		out[i] = float32(v)
	}
	return out
}

// relErr is the max-norm relative difference of got from want, relative
// to want's largest magnitude (or floor, if larger).
func relErr(got, want []float32, floor float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, m float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		m = max(m, math.Abs(float64(want[i])))
	}
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	return d / max(m, floor)
}

func compareE2E(t *testing.T, a *resnet.Arch, lr float32, got, want *e2eResult) {
	t.Helper()
	name := a.Name + " (" + strings.TrimSpace(strings.SplitN(a.Format(), "unit", 2)[1][:60]) + ")"
	if got.Err != "" {
		t.Errorf("%s: %s", name, got.Err)
		return
	}
	check := func(what string, g, w []float32, floor float64) {
		if e := relErr(g, w, max(floor, 1e-6)); !(e <= e2eTol) {
			t.Errorf("%s: %s differs by %.3g (relative), tolerance %g\ngot  %v\nwant %v", name, what, e, e2eTol, trim(g), trim(w))
		}
	}
	check("Infer logits before training", got.InferBefore, want.InferBefore, 0)
	if len(got.Steps) != len(want.Steps) {
		t.Fatalf("%s: %d steps, want %d", name, len(got.Steps), len(want.Steps))
	}
	for k := range want.Steps {
		g, w := got.Steps[k], want.Steps[k]
		check(fmt.Sprintf("step %d loss", k+1), []float32{g.Loss}, []float32{w.Loss}, 0)
		check(fmt.Sprintf("step %d logits", k+1), g.Logits, w.Logits, 0)
		// Some gradients are zero in exact arithmetic (the shift of a BN
		// whose output is normalized again) and are rounding noise in
		// both, with no scale of their own: momentum tensors are compared
		// relative to the largest momentum element of the step when that
		// is larger than their own, and weights to the largest update of
		// the step likewise.
		var gradMax, stepMax float64
		for n, wt := range w.Tensors {
			if strings.HasSuffix(n, ".momentum") {
				gradMax = max(gradMax, maxAbs(wt))
			}
		}
		stepMax = gradMax * float64(lr)
		for n, wt := range w.Tensors {
			if len(g.Tensors) != len(w.Tensors) {
				t.Errorf("%s: step %d: %d tensors, the interpreter has %d", name, k+1, len(g.Tensors), len(w.Tensors))
			}
			gt, ok := g.Tensors[n]
			if !ok {
				t.Errorf("%s: step %d: no tensor %q", name, k+1, n)
				continue
			}
			floor := stepMax
			if strings.HasSuffix(n, ".momentum") {
				floor = gradMax
			}
			check(fmt.Sprintf("step %d %s", k+1, n), gt, wt, floor)
		}
	}
	check("Infer logits after training", got.InferAfter, want.InferAfter, 0)
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

func trim(v []float32) []float32 {
	if len(v) > 8 {
		return v[:8]
	}
	return v
}

// rng is a small deterministic generator for test data.
type rng struct{ s uint64 }

func newRand(seed uint64) *rng { return &rng{seed*0x9E3779B97F4A7C15 + 1} }

func (r *rng) next() uint64 {
	r.s += 0x9E3779B97F4A7C15
	z := r.s
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

func (r *rng) normal() float64 {
	u1 := 1 - float64(r.next()>>11)/(1<<53)
	u2 := float64(r.next()>>11) / (1 << 53)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
