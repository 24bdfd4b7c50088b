package passes

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/interp"
	"github.com/resnetc/resnetc/ir/resnet"
)

func init() {
	goldenPasses = append(goldenPasses, goldenPass{dir: "fuse", fn: FuseBNReLUConv, idempotent: true})
}

// Tolerances of the equivalence tests, as norm-wise relative differences
// in the max norm (fuseRelErr): the fused graph computes the same formulas
// as the plain one, rounded at other points (a prologue keeps the
// normalized activation unrounded; moments derive the variance from sums
// instead of a second pass), so the outputs differ by a few float32
// roundings amplified through a few layers in Float32 mode, and by
// float64 roundings otherwise.
const (
	fuseInferTol   = 1e-5  // logits, interpreter in Float32 mode
	fuseTrainTol32 = 1e-4  // loss, gradients, updates, Float32 mode
	fuseTrainTol64 = 1e-10 // the same in float64
)

// fuseRelErr is the norm-wise relative difference of got from want,
// max|got-want| / max|want| (0 when both are zero, +Inf when only want
// is, or when the lengths differ).
func fuseRelErr(got, want []float64) float64 { return fuseRelErrFloor(got, want, 0) }

// fuseRelErrFloor is fuseRelErr with the denominator at least floor:
// max|got-want| / max(max|want|, floor).
func fuseRelErrFloor(got, want []float64, floor float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	diff, norm := 0.0, floor
	for i := range want {
		diff = max(diff, math.Abs(got[i]-want[i]))
		norm = max(norm, math.Abs(want[i]))
	}
	switch {
	case diff == 0:
		return 0
	case norm == 0 || math.IsNaN(diff):
		return math.Inf(1)
	}
	return diff / norm
}

// fuseFeeds returns feeds for every declaration of g: interp.Init's
// weights, but BatchNorm scales (of either sign), shifts and running
// statistics drawn at random, so that folding, the affine prologue and the
// running-average updates see values other than 1 and 0; a random input,
// labels, lr and momentum.
func fuseFeeds(g *ir.Graph, seed uint64) map[string]*interp.Tensor {
	feeds := interp.Init(g, seed)
	for _, op := range g.Ops {
		if !op.Kind.IsDecl() {
			continue
		}
		seed++
		shape := op.Result().Type.Shape
		name := op.Name
		switch {
		case op.Kind == ir.Input && name == "x":
			feeds[name] = interp.Random(seed, -1, 1, shape...)
		case op.Kind == ir.Input && name == "labels":
			feeds[name] = interp.Labels(seed, g.Output("logits").Type.Shape[1], shape[0])
		case op.Kind == ir.Input && name == "lr":
			feeds[name] = &interp.Tensor{Shape: ir.Shape{}, Data: []float64{0.1}}
		case strings.HasSuffix(name, ".gamma"):
			t := interp.Random(seed, -1, 1, shape...)
			for i, v := range t.Data {
				t.Data[i] = math.Copysign(0.5+math.Abs(v), v)
			}
			feeds[name] = t
		case strings.HasSuffix(name, ".beta") || op.Kind == ir.State && strings.HasSuffix(name, ".mean"):
			feeds[name] = interp.Random(seed, -0.5, 0.5, shape...)
		case op.Kind == ir.State && strings.HasSuffix(name, ".var"):
			feeds[name] = interp.Random(seed, 0.5, 2, shape...)
		case op.Kind == ir.State && strings.HasSuffix(name, ".momentum"):
			feeds[name] = interp.Random(seed, -1, 1, shape...)
		}
	}
	return feeds
}

// fuseMissed lists, independently of the pass's own matching, the
// patterns a fused graph must no longer contain: a bnnorm read only by a
// relu, a relu of a conv output read by nothing else, an add of a plain
// conv2d output read by nothing else, and (train mode) a bnstats of a
// conv output. Outputs and updates are not readers of interest here: the
// tested graphs read intermediate values only through ops.
func fuseMissed(g *ir.Graph) []string {
	uses := g.Uses()
	var missed []string
	only := func(v *ir.Value, op *ir.Op) bool { return len(uses[v]) == 1 && uses[v][0] == op }
	for _, op := range g.Ops {
		switch op.Kind {
		case ir.ReLU:
			a := op.Args[0]
			if a.Def.Kind == ir.BNNorm && only(a, op) {
				missed = append(missed, "bnnorm-relu: "+ir.FormatOp(g, op))
			}
			if a.Def.Kind == ir.Conv2D && only(a, op) {
				missed = append(missed, "conv-relu: "+ir.FormatOp(g, op))
			}
		case ir.Add:
			for _, a := range op.Args {
				if a.Def.Kind == ir.Conv2D && only(a, op) && op.Args[0] != op.Args[1] {
					missed = append(missed, "conv-add: "+ir.FormatOp(g, op))
				}
			}
		case ir.BNStats:
			if k := op.Args[0].Def.Kind; k == ir.Conv2D || k == ir.Conv2DFused {
				missed = append(missed, "conv-bnstats: "+ir.FormatOp(g, op))
			}
		}
	}
	return missed
}

// fuseAndCheck runs the pass on g, checks that the result verifies, that it
// changed the graph, that no fusable pattern is left, and that a second run
// changes nothing.
func fuseAndCheck(t *testing.T, g *ir.Graph) {
	t.Helper()
	before := ir.Print(g)
	if err := FuseBNReLUConv(g); err != nil {
		t.Fatal(err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatalf("fused graph does not verify: %v", err)
	}
	once := ir.Print(g)
	if once == before {
		t.Errorf("nothing was fused")
	}
	for _, m := range fuseMissed(g) {
		t.Errorf("left unfused: %s", m)
	}
	if err := FuseBNReLUConv(g); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if d := cmp.Diff(once, ir.Print(g)); d != "" {
		t.Errorf("not idempotent (-once +twice):\n%s", d)
	}
}

// TestFuseInference checks, for every unit variant (unit kind x order x
// shortcut x grow, tiny nets at batch 3), that the interpreter gives the
// same logits after FuseBNReLUConv, and after FoldBatchNorm then
// FuseBNReLUConv, as the plain inference graph: norm-wise relative
// difference at most fuseInferTol in Float32 mode.
func TestFuseInference(t *testing.T) {
	t.Parallel()
	for vi, a := range unitVariants() {
		t.Run(a.Name, func(t *testing.T) {
			t.Parallel()
			g, err := resnet.Lower(a, 3, ir.Infer)
			if err != nil {
				t.Fatal(err)
			}
			feeds := fuseFeeds(g, uint64(100+vi))
			opt := interp.Options{Float32: true}
			ref, err := interp.Run(g, feeds, opt)
			if err != nil {
				t.Fatal(err)
			}
			want := ref.Outputs["logits"].Data
			for _, fold := range []bool{false, true} {
				h := g.Clone()
				if fold {
					if err := FoldBatchNorm(h); err != nil {
						t.Fatal(err)
					}
				}
				fuseAndCheck(t, h)
				res, err := interp.Run(h, feeds, opt)
				if err != nil {
					t.Fatal(err)
				}
				if e := fuseRelErr(res.Outputs["logits"].Data, want); !(e <= fuseInferTol) {
					t.Errorf("fold=%v: logits differ by %.3g (relative, max norm), want <= %g:\ngot  %v\nwant %v",
						fold, e, fuseInferTol, res.Outputs["logits"].Data, want)
				}
			}
		})
	}
}

// TestFuseTraining checks, for every unit variant, that the training step
// built from the fused forward graph computes what the one built from the
// plain forward graph does: the same loss, the same gradient of every param
// (the grad argument of its sgd op, matched by param name), and the same
// value of every update (weights, momentum, running statistics), within
// fuseTrainTol32 in Float32 mode and fuseTrainTol64 in float64. A gradient
// is compared relative to the largest gradient element of the step when
// that is larger than its own: some gradients are zero in exact arithmetic
// (the shift of a BN whose output is normalized again by a BN after the
// add) and are rounding noise in both graphs, with no scale of their own.
func TestFuseTraining(t *testing.T) {
	t.Parallel()
	for vi, a := range unitVariants() {
		t.Run(a.Name, func(t *testing.T) {
			t.Parallel()
			step := func(fuse bool) *ir.Graph {
				g, err := resnet.Lower(a, 2, ir.Train)
				if err != nil {
					t.Fatal(err)
				}
				if fuse {
					fuseAndCheck(t, g)
				}
				if err := Autodiff(g); err != nil {
					t.Fatal(err)
				}
				if err := ir.Verify(g); err != nil {
					t.Fatalf("training step does not verify: %v", err)
				}
				return g
			}
			plain, fused := step(false), step(true)
			if !fuseHasKind(fused, ir.Moments) {
				t.Errorf("the fused step has no moments: no statistics epilogue")
			}
			feeds := fuseFeeds(plain, uint64(500+vi))
			for _, c := range []struct {
				f32 bool
				tol float64
			}{{true, fuseTrainTol32}, {false, fuseTrainTol64}} {
				opt := interp.Options{Float32: c.f32, Step: 3}
				want, err := interp.Run(plain, feeds, opt)
				if err != nil {
					t.Fatal(err)
				}
				got, err := interp.Run(fused, feeds, opt)
				if err != nil {
					t.Fatal(err)
				}
				check := func(what string, g, w []float64, floor float64) {
					if e := fuseRelErrFloor(g, w, floor); !(e <= c.tol) {
						t.Errorf("float32=%v: %s differs by %.3g (relative, max norm), want <= %g:\ngot  %v\nwant %v", c.f32, what, e, c.tol, g, w)
					}
				}
				check("loss", got.Outputs["loss"].Data, want.Outputs["loss"].Data, 0)
				wantGrads, gotGrads := fuseParamGrads(plain, want), fuseParamGrads(fused, got)
				if len(wantGrads) == 0 || len(gotGrads) != len(wantGrads) {
					t.Fatalf("%d param gradients in the fused step, %d in the plain one", len(gotGrads), len(wantGrads))
				}
				scale := 0.0
				for _, w := range wantGrads {
					for _, v := range w {
						scale = max(scale, math.Abs(v))
					}
				}
				for name, w := range wantGrads {
					g, ok := gotGrads[name]
					if !ok {
						t.Errorf("param %q has no gradient in the fused step", name)
						continue
					}
					check("gradient of "+name, g, w, scale)
				}
				if len(got.Updates) != len(want.Updates) {
					t.Errorf("%d updates in the fused step, %d in the plain one", len(got.Updates), len(want.Updates))
				}
				for name, w := range want.Updates {
					g, ok := got.Updates[name]
					if !ok {
						t.Errorf("%q is not updated by the fused step", name)
						continue
					}
					check("update of "+name, g.Data, w.Data, 0)
				}
			}
		})
	}
}

// fuseParamGrads returns the gradient each sgd op of g applies, by param
// name, as computed in res.
func fuseParamGrads(g *ir.Graph, res *interp.Result) map[string][]float64 {
	grads := map[string][]float64{}
	for _, op := range g.Ops {
		if op.Kind == ir.SGD {
			grads[op.Args[0].Def.Name] = res.Values[op.Args[1]].Data
		}
	}
	return grads
}

func fuseHasKind(g *ir.Graph, k ir.OpKind) bool {
	for _, op := range g.Ops {
		if op.Kind == k {
			return true
		}
	}
	return false
}

// TestFusePreact164 checks the structure of the fused ResNet-164 training
// step (full pre-activation bottleneck units, batch 2) against counts
// derived from the architecture: every BatchNorm becomes moments of a
// conv's statistics epilogue and a bnaffine, and then either a conv's
// affine_relu prologue or one of the materialized affine_relu ops, of which
// there is one per first or growing unit (read by the branch and the
// projection) plus the head's; each unit's add is a residual epilogue; no
// bnnorm, relu or bnstats is left. The backward part reads no BatchNorm or
// ReLU output: of the forward activations it reads only conv outputs (the
// stored pre-BN tensors), the materialized affine_relu outputs and the
// input, and it recomputes every prologue from the pre-BN tensor.
func TestFusePreact164(t *testing.T) {
	t.Parallel()
	a, err := resnet.LoadPreset("preact-resnet-164")
	if err != nil {
		t.Fatal(err)
	}
	if a.Unit != resnet.Bottleneck || a.Order != resnet.FullPreact || a.Stem.MaxPool {
		t.Fatalf("preset preact-resnet-164 is not a full pre-activation bottleneck net without a max-pool stem")
	}
	units := a.Units()
	bns := 3*units + 1 // three per unit, and the head's
	shared := 0        // first or growing units
	projections := 0
	cin := a.Stem.Width
	for i, s := range a.Stages {
		if i == 0 || s.Stride != 1 || s.Width != cin {
			shared++
			if a.Shortcut.Kind == resnet.Conv1x1 || a.Grow == resnet.GrowB {
				projections++
			}
		}
		cin = s.Width
	}
	convs := 1 + 3*units + projections
	if units != 54 || shared != 3 {
		t.Fatalf("ResNet-164 has %d units, %d of them first or growing; want 54 and 3", units, shared)
	}

	g, err := resnet.Lower(a, 2, ir.Train)
	if err != nil {
		t.Fatal(err)
	}
	if err := FuseBNReLUConv(g); err != nil {
		t.Fatal(err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
	count := map[ir.OpKind]int{}
	fused := map[string]int{"relu": 0, "bias": 0, "prologue=relu": 0}
	for _, op := range g.Ops {
		count[op.Kind]++
		if op.Kind == ir.Conv2DFused {
			for _, attr := range []string{"stats", "residual", "relu", "bias"} {
				if op.Bool(attr) {
					fused[attr]++
				}
			}
			fused["prologue="+op.Str("prologue")]++
		}
	}
	want := map[ir.OpKind]int{
		ir.BNNorm: 0, ir.ReLU: 0, ir.BNStats: 0, ir.Conv2D: 0, ir.Add: 0,
		ir.Moments: bns, ir.BNAffine: bns, ir.AffineReLU: shared + 1,
		ir.Conv2DFused: convs, ir.EMA: 2 * bns,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %s ops, want %d", count[k], k, n)
		}
	}
	wantFused := map[string]int{
		"stats": bns, "residual": units, "relu": 0, "bias": 0,
		"prologue=affine_relu": bns - (shared + 1), "prologue=relu": 0,
		"prologue=none": convs - (bns - (shared + 1)),
	}
	if d := cmp.Diff(wantFused, fused); d != "" {
		t.Errorf("conv2d_fused epilogues and prologues (-want +got):\n%s", d)
	}

	forward := len(g.Ops)
	materialized := map[*ir.Value]bool{}
	for _, op := range g.Ops {
		if op.Kind == ir.AffineReLU {
			materialized[op.Result()] = true
		}
	}
	if err := Autodiff(g); err != nil {
		t.Fatal(err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
	index := map[*ir.Op]int{}
	for i, op := range g.Ops {
		index[op] = i
	}
	readShared := map[*ir.Value]bool{}
	recomputed := 0
	for _, op := range g.Ops[forward:] {
		if op.Kind == ir.Conv2DDwFused && op.Str("prologue") == "affine_relu" {
			recomputed++
			if k := op.Args[1].Def.Kind; k != ir.Conv2DFused {
				t.Errorf("%s recomputes its prologue from a %s output, want a conv's pre-BN output", ir.FormatOp(g, op), k)
			}
		}
		for _, a := range op.Args {
			if index[a.Def] >= forward || a.Def.Kind.IsDecl() || len(a.Type.Shape) != 4 {
				continue
			}
			switch k := a.Def.Kind; {
			case k == ir.Conv2DFused:
			case k == ir.AffineReLU && materialized[a]:
				readShared[a] = true
			default:
				t.Errorf("the backward op %s reads the forward %s output %s", ir.FormatOp(g, op), k, ir.FormatOp(g, a.Def))
			}
		}
	}
	if recomputed != bns-(shared+1) {
		t.Errorf("%d weight gradients recompute an affine_relu prologue, want %d", recomputed, bns-(shared+1))
	}
	// The branch's first conv and the projection read each unit's shared
	// activation for their weight gradients; the head's feeds only the
	// pooling, whose gradient does not read it.
	if len(readShared) != shared {
		t.Errorf("the backward part reads %d materialized affine_relu outputs, want %d", len(readShared), shared)
	}
}

// TestFuseNegativeGoldens checks that every negative golden case
// (testdata/passes/fuse/neg_*.txtar) expects the graph unchanged, so that
// rewriting the goldens with -update cannot turn a negative case into an
// accepted fusion unnoticed.
func TestFuseNegativeGoldens(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "passes", "fuse", "neg_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 5 {
		t.Fatalf("%d negative golden cases, want at least 5", len(paths))
	}
	for _, path := range paths {
		a := golden.ReadArchive(t, path)
		in, ok1 := golden.Section(a, "in.ir")
		want, ok2 := golden.Section(a, "want.ir")
		if !ok1 || !ok2 {
			t.Errorf("%s: want in.ir and want.ir sections", path)
			continue
		}
		if d := cmp.Diff(string(in), string(want)); d != "" {
			t.Errorf("%s: a negative case must leave the graph unchanged (-in +want):\n%s", path, d)
		}
	}
}

// TestFuseSharedReLU checks that a BN-ReLU read by two convs is
// materialized once, not fused into both convs as two prologues.
func TestFuseSharedReLU(t *testing.T) {
	g := ir.New("shared", ir.Infer)
	x := g.Decl(ir.Input, "x", ir.T32(2, 2, 3, 3), nil)
	c := ir.T32(2)
	bn := g.MustOp(ir.BNNorm, "bn", nil, x,
		g.Decl(ir.State, "bn.mean", c, nil), g.Decl(ir.State, "bn.var", c, ir.Attrs{"init": "ones"}),
		g.Decl(ir.Param, "bn.gamma", c, ir.Attrs{"init": "ones"}), g.Decl(ir.Param, "bn.beta", c, nil)).Result()
	r := g.MustOp(ir.ReLU, "relu", nil, bn).Result()
	a := g.MustOp(ir.Conv2D, "conv.a", ir.Attrs{"pad": 1}, r, g.Decl(ir.Param, "wa", ir.T32(2, 2, 3, 3), nil)).Result()
	b := g.MustOp(ir.Conv2D, "conv.b", nil, r, g.Decl(ir.Param, "wb", ir.T32(2, 2, 1, 1), nil)).Result()
	g.AddOutput("a", a)
	g.AddOutput("b", b)
	if err := FuseBNReLUConv(g); err != nil {
		t.Fatal(err)
	}
	count := map[ir.OpKind]int{}
	for _, op := range g.Ops {
		count[op.Kind]++
	}
	if count[ir.AffineReLU] != 1 || count[ir.BNAffine] != 1 || count[ir.Conv2D] != 2 || count[ir.Conv2DFused] != 0 || count[ir.BNNorm]+count[ir.ReLU] != 0 {
		t.Errorf("want one bnaffine, one affine_relu and the two plain convs reading it:\n%s", ir.Print(g))
	}
	ar := g.Output("a").Def.Args[0]
	if ar.Def.Kind != ir.AffineReLU || g.Output("b").Def.Args[0] != ar {
		t.Errorf("the convs do not both read the affine_relu:\n%s", ir.Print(g))
	}
}

// TestFuseErrors checks that graphs the pass cannot handle are rejected
// with an error naming the problem (and the op, where there is one), and
// left unchanged.
func TestFuseErrors(t *testing.T) {
	if err := FuseBNReLUConv(nil); err == nil || err.Error() != "fuse-bn-relu-conv: nil graph" {
		t.Errorf("nil graph: error %v", err)
	}
	for _, c := range []struct {
		name  string
		graph func() *ir.Graph
		want  string
	}{
		{"backward", func() *ir.Graph {
			g := lowerTiny(t, ir.Train)
			if err := Autodiff(g); err != nil {
				t.Fatal(err)
			}
			return g
		}, `fuse-bn-relu-conv: op 66 softmaxce_grad "loss.dx": the graph already has a backward part`},
		{"sgd only", func() *ir.Graph {
			g := linearGraph(ir.Train)
			w := g.Lookup("fc.weight").Result()
			m := g.Decl(ir.State, "m", w.Type, nil)
			lr := g.Decl(ir.Input, "lr", ir.T32(), nil)
			g.MustOp(ir.SGD, "fc.weight.sgd", nil, w, w, m, lr)
			return g
		}, `fuse-bn-relu-conv: op 6 sgd "fc.weight.sgd": the graph already has a backward part`},
		{"unverified", func() *ir.Graph {
			g := linearGraph(ir.Infer)
			g.Outputs = append(g.Outputs, g.Outputs[0])
			return g
		}, "fuse-bn-relu-conv: input graph does not verify: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := c.graph()
			before := ir.Print(g)
			err := FuseBNReLUConv(g)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %v, want prefix %q", err, c.want)
			}
			if pe := (*Error)(nil); !errors.As(err, &pe) || pe.Pass != "fuse-bn-relu-conv" {
				t.Errorf("error %T is not a pass *Error of fuse-bn-relu-conv", err)
			}
			if d := cmp.Diff(before, ir.Print(g)); d != "" {
				t.Errorf("graph changed on error (-before +after):\n%s", d)
			}
		})
	}
}
