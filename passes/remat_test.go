package passes

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/interp"
	"github.com/resnetc/resnetc/ir/resnet"
)

// rematRun runs a step and returns, besides outputs and updates, every
// sgd op's gradient argument, by the op's name.
func rematRun(t *testing.T, g *ir.Graph, feeds map[string]*interp.Tensor, opt interp.Options) (*interp.Result, map[string]*interp.Tensor) {
	t.Helper()
	res, err := interp.Run(g, feeds, opt)
	if err != nil {
		t.Fatal(err)
	}
	grads := map[string]*interp.Tensor{}
	for _, op := range g.Ops {
		if op.Kind == ir.SGD {
			grads[op.Name] = res.Values[op.Args[1]]
		}
	}
	return res, grads
}

// tightestArena asks Rematerialize for an impossible budget and returns
// the smallest arena its error states, checking that g is unchanged.
func tightestArena(t *testing.T, g *ir.Graph) int64 {
	t.Helper()
	before := ir.Print(g)
	_, err := Rematerialize(g, 1)
	var be *BudgetError
	if !errors.As(err, &be) || be.MinArena <= 0 || be.Segments+be.CheapUnits == 0 {
		t.Fatalf("Rematerialize with a 1-byte budget: %v, want a BudgetError that recomputes something", err)
	}
	if ir.Print(g) != before {
		t.Fatal("Rematerialize changed the graph and failed")
	}
	return be.MinArena
}

// kindCount counts ops by kind.
func kindCount(g *ir.Graph) map[ir.OpKind]int {
	n := map[ir.OpKind]int{}
	for _, op := range g.Ops {
		n[op.Kind]++
	}
	return n
}

// TestRematerializeSemantics checks rematerialized steps of every unit
// design against the original: whole segments of two units recomputed,
// only the cheap recomputations, and Rematerialize at the tightest budget
// it can meet and halfway from there to the arena without recomputation.
// Each case runs on the step right after autodiff and on the step the
// pipeline gives remat (fused, folded, blocked). See checkRemat for what
// is checked.
func TestRematerializeSemantics(t *testing.T) {
	t.Parallel()
	for ci, c := range memCases {
		for _, pipeline := range []bool{false, true} {
			name := c.name + "/autodiff"
			if pipeline {
				name = c.name + "/pipeline"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testRematSemantics(t, ci, c, pipeline)
			})
		}
	}
}

func testRematSemantics(t *testing.T, ci int, c memCase, pipeline bool) {
	orig := memStep(t, memArch(c))
	if pipeline {
		var err error
		if orig, err = resnet.Lower(memArch(c), memBatch, ir.Train); err != nil {
			t.Fatal(err)
		}
		if _, err := Run(orig, RunOptions{StopAfter: "layout"}); err != nil {
			t.Fatal(err)
		}
	}
	base := mustPlan(t, orig)
	feeds := memFeeds(orig, uint64(ci+11))
	// The rewrites themselves, whatever a budget would choose.
	for _, mode := range []string{"segments", "cheap", "stream", "mixed"} {
		t.Run(mode, func(t *testing.T) {
			g := orig.Clone()
			s, err := buildSched(g)
			if err != nil {
				t.Fatal(err)
			}
			r := newRemat(s, backwardStart(g.Ops))
			items := r.cheap
			segs, streams := r.segments(2), r.streams(2)
			// A stream segment exists where the backward part reads the
			// stream inside a segment. Without fusion, ReLU-only
			// pre-activation reads only the ReLU of the stream, computed in
			// the next unit; fused, the ReLU is a conv's prologue, and the
			// stream is read where the segment has a unit with a conv.
			wantStreams := 3
			if c.order == resnet.ReLUOnlyPreact {
				wantStreams = 0
				if pipeline {
					wantStreams = 2
				}
			}
			if len(segs) != 3 || len(streams) != wantStreams {
				t.Fatalf("%d segments and %d stream segments of 2 units, want 3 and %d", len(segs), len(streams), wantStreams)
			}
			if len(streams) == 0 && (mode == "stream" || mode == "mixed") {
				return
			}
			whole := map[int]*segment{}
			for _, sg := range segs {
				whole[sg.first] = sg
			}
			for i, st := range streams {
				// A stream segment recomputes the stream of its first unit
				// only: less than the whole segment.
				w := whole[st.first]
				if w == nil || st.last != w.last || st.flops >= w.flops || st.stored >= w.stored || len(st.ops) == 0 {
					t.Fatalf("stream segment %d (units %d..%d): %d ops, %d FLOPs, %d bytes; the whole segment: %+v", i, st.first, st.last, len(st.ops), st.flops, st.stored, w)
				}
				for _, op := range st.ops {
					o := s.ops[op].op
					if c.unit == resnet.Bottleneck && (o.Kind == ir.Conv2D || o.Kind == ir.Conv2DFused) &&
						!strings.HasSuffix(o.Name, ".conv3") && !strings.HasSuffix(o.Name, ".shortcut.conv") {
						t.Errorf("stream segment %d clones %s; only the last convolutions and shortcuts add to the stream", i, o.Name)
					}
				}
			}
			switch mode {
			case "segments":
				items = segs
			case "stream":
				items = streams
			case "mixed":
				// Cheap items everywhere, every stream segment, and the
				// segment of the last stream whole: effective keeps what
				// does not overlap.
				last := streams[len(streams)-1]
				items = effective(append(append(slices.Clone(r.cheap), streams...), whole[last.first]))
				if slices.Contains(items, last) || !slices.Contains(items, streams[0]) || !slices.Contains(items, whole[last.first]) {
					t.Fatalf("effective kept the stream segment a whole segment covers, or dropped another")
				}
			}
			if len(items) == 0 {
				t.Fatal("nothing to recompute")
			}
			trial := s.withSegments(items)
			want := placeBuffers(trial.buffers(trial.liveness()))
			r.apply(g, items)
			rep := &RematReport{}
			r.describe(rep, 2, items)
			for _, op := range orig.Ops {
				rep.StepFLOPs += opFLOPs(op)
			}
			p := checkRemat(t, orig, g, rep, feeds)
			if p.ArenaBytes != want {
				t.Errorf("arena %d, the trial schedule's %d", p.ArenaBytes, want)
			}
		})
	}
	tight := tightestArena(t, orig.Clone())
	if tight >= base.ArenaBytes {
		t.Fatalf("recomputing everything gives %d bytes, no better than %d", tight, base.ArenaBytes)
	}
	for _, budget := range []int64{tight, (tight + base.ArenaBytes) / 2} {
		t.Run(strconv.FormatInt(budget, 10), func(t *testing.T) {
			g := orig.Clone()
			rep, err := Rematerialize(g, budget)
			if err != nil {
				t.Fatal(err)
			}
			p := checkRemat(t, orig, g, rep, feeds)
			if p.ArenaBytes != rep.ArenaBytes || p.ArenaBytes > budget || p.ArenaBytes >= base.ArenaBytes {
				t.Errorf("arena after %d (report %d), budget %d, before %d", p.ArenaBytes, rep.ArenaBytes, budget, base.ArenaBytes)
			}
		})
	}
}

// checkRemat checks a rematerialized step g against the original: it
// verifies; the interpreter gives bitwise the same loss, logits, gradients
// (the sgd ops' gradient arguments) and updates, in float64 and float32;
// its plan passes the checker and runs in the planned memory; ema, sgd,
// batch statistics and declarations are not cloned; clones sit in the
// backward part and no backward op reads an op that has a clone; and the
// report's counts are those of the clones. It returns g's plan.
func checkRemat(t *testing.T, orig, g *ir.Graph, rep *RematReport, feeds map[string]*interp.Tensor) *MemPlan {
	t.Helper()
	if err := ir.Verify(g); err != nil {
		t.Fatalf("rematerialized graph does not verify: %v", err)
	}
	if rep.OpsCloned == 0 {
		t.Fatalf("nothing recomputed: %+v", rep)
	}
	p := mustPlan(t, g)
	checkPlan(t, g, p)
	for _, opt := range []interp.Options{{Step: 5}, {Step: 5, Float32: true}} {
		want, wantGrads := rematRun(t, orig, feeds, opt)
		got, gotGrads := rematRun(t, g, feeds, opt)
		planSameResults(t, got, want)
		for name, w := range wantGrads {
			planSameBits(t, "gradient into "+name, gotGrads[name], w)
		}
		planSameResults(t, runPlanned(t, g, p, feeds, opt), want)
	}

	before, after := kindCount(orig), kindCount(g)
	for _, k := range []ir.OpKind{ir.EMA, ir.SGD, ir.BNStats, ir.Input, ir.Param, ir.State} {
		if before[k] != after[k] {
			t.Errorf("%d %s ops before, %d after: %s must not be recomputed", before[k], k, after[k], k)
		}
	}
	bwd := -1
	var cloned int
	var extra, step int64
	for _, op := range orig.Ops {
		step += opFLOPs(op)
	}
	index := map[*ir.Op]int{}
	type key struct {
		name string
		kind ir.OpKind
	}
	hasClone := map[key]bool{}
	for i, op := range g.Ops {
		index[op] = i
		if bwd < 0 && op.Kind == ir.SoftmaxCEGrad {
			bwd = i
		}
		name, ok := strings.CutSuffix(op.Name, ".remat")
		if !ok {
			continue
		}
		hasClone[key{name, op.Kind}] = true
		cloned++
		extra += opFLOPs(op)
		if bwd < 0 {
			t.Errorf("clone %s at op %d is in the forward pass", op.Name, i)
		}
	}
	if cloned != rep.OpsCloned || extra != rep.ExtraFLOPs || step != rep.StepFLOPs {
		t.Errorf("report: %d ops cloned, %d of %d FLOPs; the graph has %d clones of %d FLOPs, step %d",
			rep.OpsCloned, rep.ExtraFLOPs, rep.StepFLOPs, cloned, extra, step)
	}
	for _, op := range g.Ops[bwd:] {
		if strings.HasSuffix(op.Name, ".remat") {
			continue
		}
		for _, a := range op.Args {
			if index[a.Def] < bwd && hasClone[key{a.Def.Name, a.Def.Kind}] {
				t.Errorf("%s still reads %s, which has a clone", op.Name, a.Def.Name)
			}
		}
	}
	return p
}

// TestRematerializeNoChange checks the cases where the graph is left as
// it was: budget 0, a budget the plan already fits, and errors.
func TestRematerializeNoChange(t *testing.T) {
	g := memStep(t, memArch(memCases[0]))
	want := ir.Print(g)
	p := mustPlan(t, g)
	for _, budget := range []int64{0, p.ArenaBytes, 1 << 40} {
		rep, err := Rematerialize(g, budget)
		if err != nil {
			t.Fatalf("budget %d: %v", budget, err)
		}
		if rep.OpsCloned != 0 || len(rep.Segments) != 0 || rep.ExtraFLOPs != 0 || ir.Print(g) != want {
			t.Errorf("budget %d: %+v; the graph changed: %v", budget, rep, ir.Print(g) != want)
		}
	}

	infer, err := resnet.Lower(memArch(memCases[0]), memBatch, ir.Infer)
	if err != nil {
		t.Fatal(err)
	}
	// A step with no residual units: a linear classifier.
	lin := ir.New("linear", ir.Train)
	x := lin.Decl(ir.Input, "x", ir.T32(2, 4), nil)
	w := lin.Decl(ir.Param, "fc.weight", ir.T32(3, 4), nil)
	b := lin.Decl(ir.Param, "fc.bias", ir.T32(3), nil)
	lin.AddOutput("logits", lin.MustOp(ir.Linear, "fc", nil, x, w, b).Result())
	if err := Autodiff(lin); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		g      *ir.Graph
		budget int64
		want   string
	}{
		{"negative budget", g, -1, "budget -1 bytes is negative"},
		{"inference graph", infer, 1, "graph has no backward pass"},
		{"no units", lin, 64, "has no residual unit"},
		{"too small", g, 64, "budget of 64 B cannot be met: the smallest arena is"},
		{"nil graph", nil, 64, "nil graph"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before string
			if c.g != nil {
				before = ir.Print(c.g)
			}
			_, err := Rematerialize(c.g, c.budget)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "remat: ") {
				t.Errorf("error %v, want one from remat containing %q", err, c.want)
			}
			if c.g != nil && ir.Print(c.g) != before {
				t.Error("the graph changed")
			}
		})
	}
}

// TestOpFLOPs checks the FLOP counts against the formulas worked by hand.
func TestOpFLOPs(t *testing.T) {
	g := ir.New("flops", ir.Train)
	x := g.Decl(ir.Input, "x", ir.T32(2, 3, 5, 5), nil)
	w := g.Decl(ir.Param, "w", ir.T32(4, 3, 3, 3), nil)
	conv := g.MustOp(ir.Conv2D, "conv", ir.Attrs{"stride": 2, "pad": 1}, x, w)
	y := conv.Result() // [2,4,3,3]: 72 outputs of 3*3*3 = 27 MACs
	dx := g.MustOp(ir.Conv2DDx, "dx", ir.Attrs{"stride": 2, "pad": 1, "in_h": 5, "in_w": 5}, y, w)
	dw := g.MustOp(ir.Conv2DDw, "dw", ir.Attrs{"stride": 2, "pad": 1, "kernel": 3}, y, x)
	relu := g.MustOp(ir.ReLU, "relu", nil, y)
	stats := g.MustOp(ir.BNStats, "bn", nil, y)
	f := g.Decl(ir.Input, "f", ir.T32(2, 5), nil)
	fw := g.Decl(ir.Param, "fw", ir.T32(3, 5), nil)
	fb := g.Decl(ir.Param, "fb", ir.T32(3), nil)
	lin := g.MustOp(ir.Linear, "fc", nil, f, fw, fb) // 2*3 outputs of 5 MACs
	for _, c := range []struct {
		op   *ir.Op
		want int64
	}{
		{x.Def, 0},
		{conv, 2 * 72 * 27},
		{dx, 2 * 72 * 27},
		{dw, 2 * 72 * 27},
		{relu, 72},
		{stats, 72},
		{lin, 2 * 2 * 3 * 5},
	} {
		if got := opFLOPs(c.op); got != c.want {
			t.Errorf("%s: %d FLOPs, want %d", c.op, got, c.want)
		}
	}
}

// TestRematerializeGolden runs the golden cases of testdata/passes/remat
// through the shared golden helper. Each case's comment gives its budget
// on a line "budget: N" (bytes).
func TestRematerializeGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "passes", "remat", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no golden cases in testdata/passes/remat")
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			a := golden.ReadArchive(t, path)
			budget := int64(-1)
			for _, line := range strings.Split(string(a.Comment), "\n") {
				if v, ok := strings.CutPrefix(line, "budget: "); ok {
					budget, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					if err != nil {
						t.Fatalf("%s: %v", path, err)
					}
				}
			}
			if budget < 0 {
				t.Fatalf(`%s: the comment has no line "budget: N"`, path)
			}
			pass := func(g *ir.Graph) error {
				_, err := Rematerialize(g, budget)
				return err
			}
			checkGolden(t, goldenPass{dir: "remat", fn: pass, idempotent: true}, path)
		})
	}
}

// TestRematerializeReport checks the plan report with a remat report
// attached, on the bottleneck case at its tightest budget.
func TestRematerializeReport(t *testing.T) {
	g := memStep(t, memArch(memCases[4]))
	rep, err := Rematerialize(g, tightestArena(t, g.Clone()))
	if err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, g)
	p.Remat = rep
	var b bytes.Buffer
	if err := p.WriteReport(&b); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("..", "testdata", "plan", "bottleneck-fullpreact-remat.txt"), b.Bytes())
	s := p.Summary()
	if s.ExtraFLOPsPercent <= 0 || s.ExtraFLOPsPercent != rep.ExtraFLOPsPercent() || s.RematStride != rep.Stride || s.OpsCloned != rep.OpsCloned {
		t.Errorf("summary %+v does not carry the remat report %+v", s, rep)
	}
}

// TestRematerializeDeep runs the acceptance case: preact-resnet-1001 at
// batch 128, one training step, lowered, differentiated, rematerialized to
// a 2 GiB arena and planned; and preact-resnet-164 the same way. It logs
// the figures: naive, no-budget arena and lower bound, arena at 2 GiB,
// extra FLOPs.
func TestRematerializeDeep(t *testing.T) {
	const budget = 2 << 30
	for _, name := range []string{"preact-resnet-164", "preact-resnet-1001"} {
		t.Run(name, func(t *testing.T) {
			a, err := resnet.LoadPreset(name)
			if err != nil {
				t.Fatal(err)
			}
			g, err := resnet.Lower(a, 128, ir.Train)
			if err != nil {
				t.Fatal(err)
			}
			if err := Autodiff(g); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p0 := mustPlan(t, g)
			planTime := time.Since(start)
			start = time.Now()
			rep, err := Rematerialize(g, budget)
			if err != nil {
				t.Fatal(err)
			}
			rematTime := time.Since(start)
			p := mustPlan(t, g)
			p.Remat = rep
			if p.ArenaBytes > budget || p.ArenaBytes != rep.ArenaBytes {
				t.Errorf("arena %d bytes (report %d), budget %d", p.ArenaBytes, rep.ArenaBytes, budget)
			}
			if p.ArenaBytes < p.LowerBoundBytes || p0.ArenaBytes < p0.LowerBoundBytes || p0.NaiveBytes < p0.LowerBoundBytes {
				t.Errorf("an arena below its lower bound: %+v, %+v", p0.Summary(), p.Summary())
			}
			t.Logf("%s batch 128: %d ops; naive %s; no budget: arena %s, lower bound %s; 2 GiB budget: arena %s, lower bound %s, stride %d, %d of %d units recomputed whole and %d their stream only, %d ops cloned, extra FLOPs %.2f%%; PlanMemory %v, Rematerialize %v",
				name, len(g.Ops), SizeString(p0.NaiveBytes), SizeString(p0.ArenaBytes), SizeString(p0.LowerBoundBytes),
				SizeString(p.ArenaBytes), SizeString(p.LowerBoundBytes), rep.Stride, rematUnits(rep), rep.Units, rep.Stream.Units, rep.OpsCloned,
				rep.ExtraFLOPsPercent(), planTime, rematTime)
		})
	}
}

// rematUnits counts the units in the recomputed segments.
func rematUnits(rep *RematReport) int {
	n := 0
	for _, s := range rep.Segments {
		n += s.Units
	}
	return n
}
