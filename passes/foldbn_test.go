package passes

import (
	"fmt"
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
	goldenPasses = append(goldenPasses, goldenPass{dir: "foldbn", fn: FoldBatchNorm, idempotent: true})
}

// foldVariants are tiny networks of every unit kind x activation order x
// shortcut kind, each with both grow shortcuts: stem 4 channels, a stage of
// width w (basic, 1-layer: 4, keeping the width; bottleneck: 8, widening
// at stride 1), then two units of width 2w, the first at stride 2.
func foldVariants() []*resnet.Arch {
	kinds := []resnet.UnitKind{resnet.Basic, resnet.OneLayer, resnet.Bottleneck}
	orders := []resnet.Order{resnet.Original, resnet.BNAfterAdd, resnet.ReLUBeforeAdd, resnet.ReLUOnlyPreact, resnet.FullPreact}
	shortcuts := []resnet.Shortcut{
		{Kind: resnet.Identity},
		{Kind: resnet.Scale, ShortcutScale: 0.5, BranchScale: 0.75},
		{Kind: resnet.Gate, GateBias: -1},
		{Kind: resnet.ShortcutGate, GateBias: -1},
		{Kind: resnet.Conv1x1},
		{Kind: resnet.DropoutShort, DropRate: 0.5},
	}
	var archs []*resnet.Arch
	for _, k := range kinds {
		w := 4
		if k == resnet.Bottleneck {
			w = 8
		}
		for _, o := range orders {
			for _, sc := range shortcuts {
				for _, gr := range []resnet.Grow{resnet.GrowA, resnet.GrowB} {
					a := &resnet.Arch{
						Name:       fmt.Sprintf("%v/%v/%v/%v", k, o, sc.Kind, gr),
						InputH:     5,
						InputW:     5,
						InputC:     3,
						Classes:    3,
						Stem:       resnet.Stem{Kernel: 3, Stride: 1, Width: 4},
						Unit:       k,
						Order:      o,
						Shortcut:   sc,
						Grow:       gr,
						Stages:     []resnet.Stage{{Units: 1, Width: w, Stride: 1}, {Units: 2, Width: 2 * w, Stride: 2}},
						BNEps:      1e-5,
						BNMomentum: 0.1,
					}
					a.Depth = k.LayersPerUnit()*a.Units() + 2
					archs = append(archs, a)
				}
			}
		}
	}
	return archs
}

// foldCounts returns how many BatchNorms of a's inference graph must fold
// and how many must stay, counted from the unit designs (the paper's
// Fig. 4, as the DSL documents them) rather than from the graph, for an
// architecture without a max-pool stem:
//
//   - the stem is conv-BN in every order but full pre-activation: folds;
//   - original, ReLU-before-add: every conv of F is followed by its BN;
//     ReLU-only pre-activation: ReLU-conv-BN, the same count: all fold;
//   - BN after addition: the last conv of F has no BN; the BN after the add
//     reads the sum: L-1 fold, one stays;
//   - full pre-activation: BN-ReLU-conv, so bn2..bnL follow convs and fold;
//     bn1 reads the residual stream and stays, as does the head's BN, but
//     the first unit's bn1 reads the bare stem conv and folds into it;
//   - a projection shortcut (conv1x1 everywhere, or option B where the unit
//     grows) is conv-BN in the post-activation orders (folds) and a bare
//     conv in the pre-activation ones.
func foldCounts(a *resnet.Arch) (fold, keep int) {
	layers := a.Unit.LayersPerUnit()
	if a.Order != resnet.FullPreact {
		fold++ // stem.bn
	}
	if a.Order == resnet.FullPreact {
		fold, keep = 1, -1 // the first unit's bn1, counted as kept below
	}
	cin := a.Stem.Width
	for _, s := range a.Stages {
		for u := range s.Units {
			stride := 1
			if u == 0 {
				stride = s.Stride
			}
			switch a.Order {
			case resnet.Original, resnet.ReLUBeforeAdd, resnet.ReLUOnlyPreact:
				fold += layers
			case resnet.BNAfterAdd, resnet.FullPreact:
				fold += layers - 1
				keep++
			}
			grow := cin != s.Width || stride != 1
			projection := a.Shortcut.Kind == resnet.Conv1x1 || grow && a.Grow == resnet.GrowB
			if projection && !a.Order.Preact() {
				fold++ // shortcut.bn
			}
			cin = s.Width
		}
	}
	if a.Order == resnet.FullPreact {
		keep++ // head.bn
	}
	return fold, keep
}

// randomizeBN replaces the Init values of every BatchNorm's statistics and
// affine params in feeds with random ones (running mean in [-1, 1], running
// variance in [0.5, 2], gamma in [0.5, 1.5], beta in [-0.5, 0.5]), so that
// a fold that mixes them up, drops one or misplaces eps changes the result.
func randomizeBN(g *ir.Graph, feeds map[string]*interp.Tensor, seed uint64) {
	ranges := [4][2]float64{{-1, 1}, {0.5, 2}, {0.5, 1.5}, {-0.5, 0.5}} // mean, var, gamma, beta
	k := uint64(0)
	for _, op := range g.Ops {
		if op.Kind != ir.BNNorm {
			continue
		}
		for i, r := range ranges {
			a := op.Args[1+i]
			k++
			feeds[a.Def.Name] = interp.Random(seed*1000+k, r[0], r[1], a.Type.Shape...)
		}
	}
}

// maxNormRelErr is |got - want|_inf / |want|_inf: the largest difference
// relative to the largest value, so that a logit near zero does not turn
// a rounding difference into a large relative error.
func maxNormRelErr(got, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, norm float64
	for i := range want {
		diff = max(diff, math.Abs(got[i]-want[i]))
		norm = max(norm, math.Abs(want[i]))
	}
	if norm == 0 {
		return diff
	}
	return diff / norm
}

// numOpsOfKind counts the ops of kind k in g.
func numOpsOfKind(g *ir.Graph, k ir.OpKind) int {
	n := 0
	for _, op := range g.Ops {
		if op.Kind == k {
			n++
		}
	}
	return n
}

// TestFoldBatchNormNets checks folding on tiny inference networks of every
// unit design. The oracle is the interpreter: with random inputs, random
// BatchNorm statistics and params, the logits after folding (bnfold of the
// weights, then a conv) equal the logits before (conv, then bnnorm) within
//
//	|after - before|_inf / |before|_inf <= 1e-5   with every tensor rounded to float32,
//	|after - before|_inf / |before|_inf <= 1e-12  in float64,
//
// the two only differing in rounding. The number of BatchNorms folded and
// kept must be foldCounts'; the output verifies and a second run changes
// nothing.
func TestFoldBatchNormNets(t *testing.T) {
	t.Parallel()
	for vi, a := range foldVariants() {
		t.Run(a.Name, func(t *testing.T) {
			t.Parallel()
			batch := 2 + vi%2
			g, err := resnet.Lower(a, batch, ir.Infer)
			if err != nil {
				t.Fatal(err)
			}
			before := g.Clone()
			seed := uint64(vi + 1)
			feeds := interp.Init(g, seed)
			feeds["x"] = interp.Random(seed, -1, 1, batch, a.InputC, a.InputH, a.InputW)
			randomizeBN(g, feeds, seed)

			wantFold, wantKeep := foldCounts(a)
			if n := numOpsOfKind(before, ir.BNNorm); n != wantFold+wantKeep {
				t.Fatalf("the lowered graph has %d BatchNorms, the unit design %d+%d: foldCounts is out of date", n, wantFold, wantKeep)
			}
			if err := FoldBatchNorm(g); err != nil {
				t.Fatal(err)
			}
			if err := ir.Verify(g); err != nil {
				t.Fatalf("output does not verify: %v", err)
			}
			if n := numOpsOfKind(g, ir.BNFold); n != wantFold {
				t.Errorf("%d BatchNorms folded, want %d", n, wantFold)
			}
			if n := numOpsOfKind(g, ir.BNNorm); n != wantKeep {
				t.Errorf("%d BatchNorms kept, want %d", n, wantKeep)
			}
			if n, m := numOpsOfKind(g, ir.Conv2D), numOpsOfKind(before, ir.Conv2D); n != m {
				t.Errorf("%d convs after folding, %d before", n, m)
			}
			uses := g.Uses()
			for _, op := range g.Ops {
				if op.Kind != ir.BNFold {
					continue
				}
				u := uses[op.Results[0]]
				if len(u) != 1 || u[0].Kind != ir.Conv2D || op.Name != u[0].Name+".fold" {
					t.Errorf("bnfold %q is not read by one conv named after it", op.Name)
				}
			}

			for _, f32 := range []bool{false, true} {
				opt := interp.Options{Float32: f32}
				tol := 1e-12
				if f32 {
					tol = 1e-5
				}
				r0, err := interp.Run(before, feeds, opt)
				if err != nil {
					t.Fatal(err)
				}
				r1, err := interp.Run(g, feeds, opt)
				if err != nil {
					t.Fatal(err)
				}
				want, got := r0.Outputs["logits"].Data, r1.Outputs["logits"].Data
				if e := maxNormRelErr(got, want); !(e <= tol) {
					t.Errorf("float32=%v: logits after folding differ by %.3g (max-norm relative), tolerance %g\nbefore %v\nafter  %v", f32, e, tol, want, got)
				}
			}

			once := ir.Print(g)
			if err := FoldBatchNorm(g); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(once, ir.Print(g)); d != "" {
				t.Errorf("not idempotent (-once +twice):\n%s", d)
			}
		})
	}
}

// TestFoldBatchNormNegative checks, beyond their golden output, that the
// negative golden cases (neg_*.txtar: where folding would be wrong) leave
// the graph exactly as it was.
func TestFoldBatchNormNegative(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "passes", "foldbn", "neg_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 6 {
		t.Fatalf("%d negative cases, want at least 6", len(paths))
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			in, ok := golden.Section(golden.ReadArchive(t, path), "in.ir")
			if !ok {
				t.Fatal("no in.ir section")
			}
			g, err := ir.Parse(path, in)
			if err != nil {
				t.Fatal(err)
			}
			want := ir.Print(g)
			if err := FoldBatchNorm(g); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, ir.Print(g)); d != "" {
				t.Errorf("graph changed (-in +out):\n%s", d)
			}
		})
	}
}

// TestFoldBatchNormErrors checks that a train-mode graph and invalid graphs
// are errors that leave the graph unchanged, never a panic.
func TestFoldBatchNormErrors(t *testing.T) {
	train, err := resnet.Lower(foldVariants()[0], 2, ir.Train)
	if err != nil {
		t.Fatal(err)
	}
	bad := ir.New("bad", ir.Infer)
	x := bad.Decl(ir.Input, "x", ir.T32(1, 2, 3, 3), nil)
	w := bad.Decl(ir.Param, "w", ir.T32(2, 2, 3, 3), nil)
	conv := bad.MustOp(ir.Conv2D, "conv", ir.Attrs{"pad": 1}, x, w)
	conv.Args[1] = nil
	for _, c := range []struct {
		name string
		g    *ir.Graph
		want string
	}{
		{"train", train, "FoldBatchNorm: graph is in train mode: BatchNorm uses batch statistics there and cannot be folded"},
		{"nil", nil, "FoldBatchNorm: nil graph"},
		{"invalid", bad, "FoldBatchNorm: input graph does not verify: op 2 conv2d \"conv\": argument 1 is nil"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before string
			if c.g != nil {
				before = ir.Print(c.g)
			}
			err := FoldBatchNorm(c.g)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			// Verify may list more than one problem, a line each.
			if first, _, _ := strings.Cut(err.Error(), "\n"); first != c.want {
				t.Fatalf("error %q, want %q", first, c.want)
			}
			if c.g != nil && ir.Print(c.g) != before {
				t.Errorf("graph changed by a failing pass")
			}
		})
	}
}
