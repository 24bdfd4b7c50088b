package passes

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/interp"
	"github.com/resnetc/resnetc/ir/resnet"
)

func init() {
	goldenPasses = append(goldenPasses, goldenPass{dir: "layout", fn: Layout, idempotent: true})
}

// checkLayoutRule checks the layouts of a graph after Layout against the
// rule, restated independently for graphs whose only rank-4 declarations
// are weights and the input image: every rank-4 value an op computes is
// nchw8c exactly when it is an activation with a multiple of 8 channels;
// weight-shaped values (weight gradients, sgd results) and declarations
// are nchw. It also checks that no relayout was needed.
func checkLayoutRule(t *testing.T, g *ir.Graph) {
	t.Helper()
	bad := 0
	for _, op := range g.Ops {
		if op.Kind == ir.Relayout {
			t.Errorf("relayout op %q in a lowered network", op.Name)
		}
		for _, r := range op.Results {
			if len(r.Type.Shape) != 4 {
				if r.Type.Layout != ir.NCHW {
					t.Errorf("%s: rank-%d result %v is not plain", op, len(r.Type.Shape), r.Type)
				}
				continue
			}
			want := ir.NCHW
			weightLike := op.Kind.IsDecl() || op.Kind == ir.Conv2DDw || op.Kind == ir.Conv2DDwFused || op.Kind == ir.SGD || op.Kind == ir.BNFold
			if !weightLike && r.Type.Shape[1]%8 == 0 {
				want = ir.NCHW8c
			}
			if r.Type.Layout != want && bad < 10 {
				bad++
				t.Errorf("%s: result %v, want layout %v", op, r.Type, want)
			}
		}
	}
}

// typeSnapshot lists every value's type in graph order, for comparing a
// graph before and after a pass that must not change it.
func typeSnapshot(g *ir.Graph) []string {
	var s []string
	for _, op := range g.Ops {
		for _, r := range op.Results {
			s = append(s, fmt.Sprintf("%s %s", op, r.Type))
		}
	}
	return s
}

// TestLayoutPresets lowers every preset at batch 2, for inference and as a
// training step (after autodiff, so gradients are included), and checks
// that Layout leaves a graph that verifies, follows the layout rule with no
// relayout anywhere (in particular not in the residual stream), keeps the
// graph's ops, and that a second run changes nothing.
func TestLayoutPresets(t *testing.T) {
	t.Parallel()
	for _, p := range resnet.Presets() {
		for _, mode := range []ir.Mode{ir.Infer, ir.Train} {
			t.Run(p.Name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				a, err := resnet.LoadPreset(p.Name)
				if err != nil {
					t.Fatal(err)
				}
				g, err := resnet.Lower(a, 2, mode)
				if err != nil {
					t.Fatal(err)
				}
				if mode == ir.Train {
					if err := Autodiff(g); err != nil {
						t.Fatal(err)
					}
				}
				ops := slices.Clone(g.Ops)
				if err := Layout(g); err != nil {
					t.Fatal(err)
				}
				if err := ir.Verify(g); err != nil {
					t.Fatalf("output does not verify: %v", err)
				}
				if !slices.Equal(ops, g.Ops) {
					t.Errorf("the op list changed: %d ops before, %d after", len(ops), len(g.Ops))
				}
				checkLayoutRule(t, g)
				once := typeSnapshot(g)
				if err := Layout(g); err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(once, typeSnapshot(g)); d != "" {
					t.Errorf("not idempotent (-once +twice):\n%s", d)
				}
			})
		}
	}
}

// layoutFeeds returns feeds for every declaration of g: Init values for
// params and state, uniform [-1, 1) inputs and labels in [0, 2).
func layoutFeeds(g *ir.Graph, seed uint64) map[string]*interp.Tensor {
	feeds := interp.Init(g, seed)
	for i, op := range g.Decls(ir.Input) {
		t := op.Result().Type
		if t.DType == ir.I32 {
			feeds[op.Name] = interp.Labels(seed+uint64(i), 2, t.Shape.Elems())
			continue
		}
		feeds[op.Name] = interp.Random(seed+uint64(i), -1, 1, t.Shape...)
	}
	return feeds
}

// checkLayoutSameResults runs g before (a clone taken before the pass) and
// after Layout in the interpreter, which ignores layouts, and requires
// bit-identical outputs and updates: Layout changes only how tensors are
// stored, so any difference is a rewiring.
func checkLayoutSameResults(t *testing.T, before, after *ir.Graph, feeds map[string]*interp.Tensor) {
	t.Helper()
	opt := interp.Options{Step: 1}
	r0, err := interp.Run(before, feeds, opt)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := interp.Run(after, feeds, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(r0.Outputs) == 0 {
		t.Fatal("graph has no outputs")
	}
	for _, m := range []struct {
		what     string
		got, wnt map[string]*interp.Tensor
	}{{"output", r1.Outputs, r0.Outputs}, {"update", r1.Updates, r0.Updates}} {
		if len(m.got) != len(m.wnt) {
			t.Errorf("%d %ss after the pass, %d before", len(m.got), m.what, len(m.wnt))
		}
		for name, want := range m.wnt {
			got, ok := m.got[name]
			if !ok {
				t.Errorf("%s %q is gone", m.what, name)
				continue
			}
			if !slices.Equal(got.Shape, want.Shape) || !slices.Equal(got.Data, want.Data) {
				t.Errorf("%s %q changed:\nbefore %v\nafter  %v", m.what, name, want.Data, got.Data)
			}
		}
	}
}

// TestLayoutNets runs Layout on the tiny networks of every unit design
// (channel counts 4 and 8 mixed, and 8 and 16 for bottlenecks): inference,
// inference after FoldBatchNorm, and the training step. The output
// verifies, follows the layout rule without any relayout, computes exactly
// what the input computed, and does not change on a second run.
func TestLayoutNets(t *testing.T) {
	t.Parallel()
	for vi, a := range foldVariants() {
		for _, variant := range []string{"infer", "folded", "train"} {
			t.Run(a.Name+"/"+variant, func(t *testing.T) {
				t.Parallel()
				mode := ir.Infer
				if variant == "train" {
					mode = ir.Train
				}
				g, err := resnet.Lower(a, 2, mode)
				if err != nil {
					t.Fatal(err)
				}
				switch variant {
				case "folded":
					err = FoldBatchNorm(g)
				case "train":
					err = Autodiff(g)
				}
				if err != nil {
					t.Fatal(err)
				}
				before := g.Clone()
				if err := Layout(g); err != nil {
					t.Fatal(err)
				}
				if err := ir.Verify(g); err != nil {
					t.Fatalf("output does not verify: %v", err)
				}
				checkLayoutRule(t, g)
				checkLayoutSameResults(t, before, g, layoutFeeds(g, uint64(vi+1)))
				once := ir.Print(g)
				if err := Layout(g); err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(once, ir.Print(g)); d != "" {
					t.Errorf("not idempotent (-once +twice):\n%s", d)
				}
			})
		}
	}
}

// TestLayoutGoldenSemantics runs the golden cases' input graphs, including
// those that need relayouts, in the interpreter before and after Layout:
// the results must be identical.
func TestLayoutGoldenSemantics(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "passes", "layout", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	relayouts := 0
	for i, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			in, ok := golden.Section(golden.ReadArchive(t, path), "in.ir")
			if !ok {
				t.Fatal("no in.ir section")
			}
			g, err := ir.Parse(path, in)
			if err != nil {
				t.Fatal(err)
			}
			before := g.Clone()
			if err := Layout(g); err != nil {
				t.Fatal(err)
			}
			relayouts += numOpsOfKind(g, ir.Relayout)
			checkLayoutSameResults(t, before, g, layoutFeeds(g, uint64(i+1)))
		})
	}
	if relayouts == 0 {
		t.Errorf("no golden case needs a relayout")
	}
}

// TestLayoutErrors checks that invalid graphs are errors, never a panic.
func TestLayoutErrors(t *testing.T) {
	if err := Layout(nil); err == nil || err.Error() != "Layout: nil graph" {
		t.Errorf("Layout(nil): %v", err)
	}
	g := ir.New("bad", ir.Infer)
	x := g.Decl(ir.Input, "x", ir.T32(1, 8, 3, 3), nil)
	y := g.MustOp(ir.ReLU, "relu", nil, x).Result()
	y.Type.Layout = ir.NCHW8c // disagrees with its argument
	err := Layout(g)
	want := `Layout: input graph does not verify: op 1 relu "relu": shape mismatch: result 0 (%1) is f32[1,8,3,3]@nchw8c, the op table infers f32[1,8,3,3]`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}
