package passes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/interp"
	"github.com/resnetc/resnetc/ir/resnet"
)

// memCase is a tiny network for the memory tests: three units in each of
// two stages, so that segments of several units exist.
type memCase struct {
	name  string
	unit  resnet.UnitKind
	order resnet.Order
	sc    resnet.Shortcut
	grow  resnet.Grow
}

// memCases cover every unit kind, full pre-activation and the original
// order (and the other orders once), and every shortcut kind, dropout
// among them.
var memCases = []memCase{
	{"basic-original-a", resnet.Basic, resnet.Original, resnet.Shortcut{Kind: resnet.Identity}, resnet.GrowA},
	{"basic-fullpreact-b", resnet.Basic, resnet.FullPreact, resnet.Shortcut{Kind: resnet.Identity}, resnet.GrowB},
	{"1layer-original-dropout", resnet.OneLayer, resnet.Original, resnet.Shortcut{Kind: resnet.DropoutShort, DropRate: 0.5}, resnet.GrowA},
	{"1layer-fullpreact-shortcutgate", resnet.OneLayer, resnet.FullPreact, resnet.Shortcut{Kind: resnet.ShortcutGate, GateBias: -1}, resnet.GrowB},
	{"bottleneck-fullpreact-b", resnet.Bottleneck, resnet.FullPreact, resnet.Shortcut{Kind: resnet.Identity}, resnet.GrowB},
	{"bottleneck-original-conv1x1", resnet.Bottleneck, resnet.Original, resnet.Shortcut{Kind: resnet.Conv1x1}, resnet.GrowB},
	{"basic-bnafteradd-gate", resnet.Basic, resnet.BNAfterAdd, resnet.Shortcut{Kind: resnet.Gate, GateBias: -1}, resnet.GrowB},
	{"basic-reluonly-scale", resnet.Basic, resnet.ReLUOnlyPreact, resnet.Shortcut{Kind: resnet.Scale, ShortcutScale: 0.5, BranchScale: 0.75}, resnet.GrowA},
	{"bottleneck-relubeforeadd-b", resnet.Bottleneck, resnet.ReLUBeforeAdd, resnet.Shortcut{Kind: resnet.Identity}, resnet.GrowB},
}

const memBatch = 2

func memArch(c memCase) *resnet.Arch {
	w := 4
	if c.unit == resnet.Bottleneck {
		w = 8
	}
	return &resnet.Arch{
		Name:   c.name,
		InputH: 4, InputW: 4, InputC: 3, Classes: 3,
		Stem:       resnet.Stem{Kernel: 3, Stride: 1, Width: 4},
		Unit:       c.unit,
		Order:      c.order,
		Shortcut:   c.sc,
		Grow:       c.grow,
		Stages:     []resnet.Stage{{Units: 3, Width: w, Stride: 1}, {Units: 3, Width: 2 * w, Stride: 2}},
		BNEps:      1e-5,
		BNMomentum: 0.1,
	}
}

// memStep lowers a to a training step at batch memBatch.
func memStep(t testing.TB, a *resnet.Arch) *ir.Graph {
	t.Helper()
	g, err := resnet.Lower(a, memBatch, ir.Train)
	if err != nil {
		t.Fatal(err)
	}
	if err := Autodiff(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// memFeeds feeds every declaration of a training step: initialized
// weights, random nonzero momentum, random input and labels.
func memFeeds(g *ir.Graph, seed uint64) map[string]*interp.Tensor {
	feeds := interp.Init(g, seed)
	classes := 3
	if l := g.Output("logits"); l != nil && len(l.Type.Shape) == 2 {
		classes = l.Type.Shape[1]
	}
	for _, op := range g.Ops {
		switch {
		case op.Kind == ir.State && strings.HasSuffix(op.Name, ".momentum"):
			seed++
			feeds[op.Name] = interp.Random(seed, -1, 1, op.Result().Type.Shape...)
		case op.Kind == ir.Input && op.Result().Type.DType == ir.I32:
			feeds[op.Name] = interp.Labels(seed, classes, op.Result().Type.Shape[0])
		case op.Kind == ir.Input:
			feeds[op.Name] = interp.Random(seed, -1, 1, op.Result().Type.Shape...)
		}
	}
	if lr := feeds["lr"]; lr != nil {
		lr.Data[0] = 0.1
	}
	return feeds
}

func mustPlan(t testing.TB, g *ir.Graph) *MemPlan {
	t.Helper()
	p, err := PlanMemory(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// oracleLegalArgs are the argument positions whose buffer a first result
// may take, written down from the op semantics of ir/ops.go: each output
// element reads only the same element of that argument.
var oracleLegalArgs = map[ir.OpKind][]int{
	ir.ReLU: {0}, ir.Sigmoid: {0}, ir.Scale: {0}, ir.BNNorm: {0}, ir.AffineReLU: {0},
	ir.Add: {0, 1}, ir.Mul: {0, 1}, ir.ReLUGrad: {0, 1}, ir.SigmoidGrad: {0, 1},
	ir.StatsGrad: {2},
}

func oracleLegal(op *ir.Op) []int {
	if op.Kind == ir.Conv2DFused && op.Bool("residual") {
		return []int{len(op.Args) - 1}
	}
	if op.Kind == ir.AffineReLUGrad {
		// dx reads da and acc (when given) at its own index only.
		return []int{0, 4}[:len(op.Args)-3]
	}
	if op.Kind == ir.BNStatsGrad {
		// x, and the gradient added to when there is one; dmean, dvar and
		// mean are per-channel vectors.
		return []int{2, 4}[:len(op.Args)-3]
	}
	return oracleLegalArgs[op.Kind]
}

// planOracle is what the checker derives from the graph alone.
type planOracle struct {
	def, last map[*ir.Value]int
	inState   map[*ir.Value]*ir.Value
	root      map[*ir.Value]*ir.Value // arena values: the value that defines their buffer
	aliases   []string
}

// deriveOracle computes liveness and the legal in-place decisions from
// the graph: a value lives from its op (inputs from 0) to its last reader
// (outputs and update values to len(g.Ops)); an sgd or ema update value
// goes into its target's state memory when the op reads the target and no
// later op reads it; a first result takes the first legal argument that is
// an op result in the arena, of the same type, read for the last time.
func deriveOracle(g *ir.Graph, ids map[*ir.Value]int) *planOracle {
	n := len(g.Ops)
	o := &planOracle{def: map[*ir.Value]int{}, last: map[*ir.Value]int{}, inState: map[*ir.Value]*ir.Value{}, root: map[*ir.Value]*ir.Value{}}
	for i, op := range g.Ops {
		for _, r := range op.Results {
			o.def[r], o.last[r] = i, i
			if op.Kind == ir.Input {
				o.def[r] = 0
			}
		}
		for _, a := range op.Args {
			o.last[a] = i
		}
	}
	for _, out := range g.Outputs {
		o.last[out.Value] = n
	}
	target := map[*ir.Value]*ir.Value{}
	for _, u := range g.Updates {
		o.last[u.Value] = n
		if target[u.Value] == nil {
			target[u.Value] = u.Target
		}
	}
	for i, op := range g.Ops {
		if op.Kind == ir.Param || op.Kind == ir.State {
			continue
		}
		if op.Kind == ir.Input {
			o.root[op.Result()] = op.Result()
			continue
		}
		for j, r := range op.Results {
			if tg := target[r]; tg != nil && (op.Kind == ir.SGD || op.Kind == ir.EMA) && slices.Contains(op.Args, tg) && o.last[tg] == i {
				o.inState[r] = tg
				o.aliases = append(o.aliases, fmt.Sprintf("op %d %s: %%%d into state %%%d", i, op.Kind, ids[r], ids[tg]))
				continue
			}
			o.root[r] = r
			if j > 0 {
				continue
			}
			for _, pos := range oracleLegal(op) {
				a := op.Args[pos]
				if a.Def.Kind.IsDecl() || o.inState[a] != nil || o.last[a] != i || !a.Type.Equal(r.Type) {
					continue
				}
				o.root[r] = o.root[a]
				o.aliases = append(o.aliases, fmt.Sprintf("op %d %s: %%%d takes %%%d", i, op.Kind, ids[r], ids[a]))
				break
			}
		}
	}
	return o
}

// checkPlan checks p against g without trusting the planner: liveness and
// the legal in-place decisions are derived from the graph again
// (deriveOracle); every arena value must have an aligned offset with its
// whole size inside the arena; values sharing an offset must be exactly
// the in-place chains; no two buffers live at the same time may overlap in
// the arena; the lower bound and the naive peak must be the maxima over
// the schedule of the live bytes, reached at PeakOp; state bytes must add
// up by role.
func checkPlan(t *testing.T, g *ir.Graph, p *MemPlan) {
	t.Helper()
	ids := map[*ir.Value]int{}
	for _, op := range g.Ops {
		for _, r := range op.Results {
			ids[r] = len(ids)
		}
	}
	o := deriveOracle(g, ids)
	var got []string
	for _, a := range p.Aliases {
		if a.State {
			got = append(got, fmt.Sprintf("op %d %s: %%%d into state %%%d", a.Op, g.Ops[a.Op].Kind, ids[a.Value], ids[a.Into]))
		} else {
			got = append(got, fmt.Sprintf("op %d %s: %%%d takes %%%d", a.Op, g.Ops[a.Op].Kind, ids[a.Value], ids[a.Into]))
		}
	}
	if d := cmp.Diff(o.aliases, got); d != "" {
		t.Fatalf("in-place decisions differ from the legal ones (-legal +plan):\n%s", d)
	}
	if len(p.InState) != len(o.inState) {
		t.Errorf("plan has %d values in state memory, want %d", len(p.InState), len(o.inState))
	}
	for v, tg := range o.inState {
		if p.InState[v] != tg {
			t.Errorf("%%%d: in state %v, want its target", ids[v], p.InState[v])
		}
	}

	// Buffers: one per root, [def of root, last use of any member].
	type buf struct {
		root       *ir.Value
		start, end int
		size       int64
		off        int64
	}
	bufs := map[*ir.Value]*buf{}
	var order []*buf
	for _, op := range g.Ops {
		for _, r := range op.Results {
			root, ok := o.root[r]
			if !ok {
				if _, has := p.Offsets[r]; has {
					t.Errorf("%%%d (%s) has an arena offset but lives in state memory", ids[r], op.Kind)
				}
				continue
			}
			off, ok := p.Offsets[r]
			if !ok {
				t.Fatalf("%%%d (%s %q) has no arena offset", ids[r], op.Kind, op.Name)
			}
			size := (r.Type.Bytes() + 63) / 64 * 64
			if off%64 != 0 || off < 0 || off+size > p.ArenaBytes {
				t.Errorf("%%%d: offset %d, size %d: not aligned or outside the arena of %d", ids[r], off, size, p.ArenaBytes)
			}
			b := bufs[root]
			if b == nil {
				b = &buf{root: root, start: o.def[root], end: o.last[r], size: size, off: off}
				bufs[root] = b
				order = append(order, b)
			} else if off != b.off {
				t.Errorf("%%%d takes the buffer of %%%d in place but has offset %d, not %d", ids[r], ids[root], off, b.off)
			}
			b.end = max(b.end, o.last[r])
		}
	}
	if len(p.Buffers) != len(order) {
		t.Errorf("plan has %d buffers, the in-place chains give %d", len(p.Buffers), len(order))
	}
	for _, pb := range p.Buffers {
		b := bufs[pb.Values[0]]
		if b == nil || pb.Start != b.start || pb.End != b.end || pb.Offset != b.off || pb.Size != b.size {
			t.Errorf("buffer of %%%d: plan [%d,%d] at %d size %d, want %+v", ids[pb.Values[0]], pb.Start, pb.End, pb.Offset, pb.Size, b)
		}
	}

	// No two buffers live at the same time overlap: sweep in start order.
	sort.SliceStable(order, func(i, j int) bool { return order[i].start < order[j].start })
	var active []*buf
	for _, b := range order {
		active = slices.DeleteFunc(active, func(a *buf) bool { return a.end < b.start })
		for _, a := range active {
			if a.off < b.off+b.size && b.off < a.off+a.size {
				t.Fatalf("buffers of %%%d [%d,%d] and %%%d [%d,%d] are live together and overlap at offsets %d+%d and %d+%d",
					ids[a.root], a.start, a.end, ids[b.root], b.start, b.end, a.off, a.size, b.off, b.size)
			}
		}
		active = append(active, b)
	}

	// Peaks, by brute force over the schedule.
	n := len(g.Ops)
	var lb, naive, atPeak int64
	for tm := 0; tm <= n; tm++ {
		var live, all int64
		for _, b := range order {
			if b.start <= tm && tm <= b.end {
				live += b.size
			}
		}
		for v, d := range o.def {
			if v.Def.Kind != ir.Param && v.Def.Kind != ir.State && d <= tm && tm <= o.last[v] {
				all += (v.Type.Bytes() + 63) / 64 * 64
			}
		}
		lb, naive = max(lb, live), max(naive, all)
		if tm == p.PeakOp {
			atPeak = live
		}
	}
	if p.LowerBoundBytes != lb || p.NaiveBytes != naive || atPeak != lb {
		t.Errorf("lower bound %d, naive %d, live at peak op %d: %d; want %d, %d, %d", p.LowerBoundBytes, p.NaiveBytes, p.PeakOp, atPeak, lb, naive, lb)
	}
	if p.ArenaBytes < lb {
		t.Errorf("arena %d is below the lower bound %d", p.ArenaBytes, lb)
	}

	// State memory by role, from the declarations' names.
	var params, momentum, running, state int64
	for _, op := range g.Ops {
		b := int64(0)
		if op.Kind == ir.Param || op.Kind == ir.State {
			b = op.Result().Type.Bytes()
		}
		state += b
		switch {
		case op.Kind == ir.Param:
			params += b
		case strings.HasSuffix(op.Name, ".momentum"):
			momentum += b
		case strings.HasSuffix(op.Name, ".mean") || strings.HasSuffix(op.Name, ".var"):
			running += b
		}
	}
	// Running statistics are the BatchNorm states, by their names, that
	// an ema or a BatchNorm reads directly.
	if p.StateBytes != state || p.ParamBytes != params || p.MomentumBytes != momentum || p.RunningBytes > running ||
		p.RunningBytes+p.OtherStateBytes != state-params-momentum {
		t.Errorf("state %d (params %d, momentum %d, running %d, other %d), want %d (%d, %d, at most %d)",
			p.StateBytes, p.ParamBytes, p.MomentumBytes, p.RunningBytes, p.OtherStateBytes, state, params, momentum, running)
	}
}

// runPlanned executes g the way generated code does under plan p: every
// arena value in one []float64 at its planned offset (in float32 units),
// params and state in memory of their own, update values computed into
// state where the plan says. Each op runs through the interpreter alone (a
// one-op graph), reading its arguments from that memory and writing its
// results back. The arena starts as NaN, and a buffer is overwritten with
// NaN as soon as its lifetime ends, so a value read after the plan let it
// die, or clobbered by a buffer placed over it, changes the results.
func runPlanned(t *testing.T, g *ir.Graph, p *MemPlan, feeds map[string]*interp.Tensor, opt interp.Options) *interp.Result {
	t.Helper()
	arena := make([]float64, p.ArenaBytes/4)
	for i := range arena {
		arena[i] = math.NaN()
	}
	state := map[*ir.Value][]float64{}
	mem := func(v *ir.Value) []float64 {
		if v.Def.Kind == ir.Param || v.Def.Kind == ir.State {
			return state[v]
		}
		if tg, ok := p.InState[v]; ok {
			return state[tg]
		}
		off, ok := p.Offsets[v]
		if !ok {
			t.Fatalf("%s result %d has no place in the plan", v.Def, v.Index)
		}
		return arena[off/4 : off/4+int64(v.Type.Shape.Elems())]
	}
	dying := map[int][]Buffer{}
	for _, b := range p.Buffers {
		dying[b.End] = append(dying[b.End], b)
	}
	for _, op := range g.Ops {
		if op.Kind.IsDecl() {
			v := op.Result()
			f := feeds[op.Name]
			if op.Kind == ir.Input {
				copy(mem(v), f.Data)
			} else {
				state[v] = slices.Clone(f.Data)
			}
		}
	}
	for i, op := range g.Ops {
		if !op.Kind.IsDecl() {
			one := ir.New("one", g.Mode)
			args := make([]*ir.Value, len(op.Args))
			in := map[string]*interp.Tensor{}
			for j, a := range op.Args {
				name := fmt.Sprintf("a%d", j)
				args[j] = one.Decl(ir.Input, name, a.Type, nil)
				in[name] = &interp.Tensor{Shape: slices.Clone(a.Type.Shape), Data: slices.Clone(mem(a))}
			}
			c, err := one.AddOp(op.Kind, op.Name, op.Attrs.Clone(), args...)
			if err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			for j, r := range c.Results {
				one.AddOutput(fmt.Sprint(j), r)
			}
			res, err := interp.Run(one, in, opt)
			if err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			for j, r := range op.Results {
				copy(mem(r), res.Outputs[fmt.Sprint(j)].Data)
			}
		}
		for _, b := range dying[i] {
			size := b.Size / 4
			for k := b.Offset / 4; k < b.Offset/4+size; k++ {
				arena[k] = math.NaN()
			}
		}
	}
	out := &interp.Result{Outputs: map[string]*interp.Tensor{}, Updates: map[string]*interp.Tensor{}}
	for _, o := range g.Outputs {
		out.Outputs[o.Name] = &interp.Tensor{Shape: o.Value.Type.Shape, Data: slices.Clone(mem(o.Value))}
	}
	for _, u := range g.Updates {
		out.Updates[u.Target.Def.Name] = &interp.Tensor{Shape: u.Value.Type.Shape, Data: slices.Clone(mem(u.Value))}
	}
	return out
}

// sameBits reports the first element where two tensors differ bitwise.
func planSameBits(t *testing.T, what string, got, want *interp.Tensor) {
	t.Helper()
	if got == nil || want == nil || len(got.Data) != len(want.Data) {
		t.Errorf("%s: got %v, want %v", what, got, want)
		return
	}
	for i := range want.Data {
		if math.Float64bits(got.Data[i]) != math.Float64bits(want.Data[i]) {
			t.Errorf("%s[%d] = %v, want %v (bitwise)", what, i, got.Data[i], want.Data[i])
			return
		}
	}
}

// sameResults checks that two runs of a step agree bitwise on every
// output and update.
func planSameResults(t *testing.T, got, want *interp.Result) {
	t.Helper()
	if len(got.Outputs) != len(want.Outputs) || len(got.Updates) != len(want.Updates) {
		t.Fatalf("%d outputs and %d updates, want %d and %d", len(got.Outputs), len(got.Updates), len(want.Outputs), len(want.Updates))
	}
	for name, w := range want.Outputs {
		planSameBits(t, "output "+name, got.Outputs[name], w)
	}
	for name, w := range want.Updates {
		planSameBits(t, "update of "+name, got.Updates[name], w)
	}
}

// TestPlanMemoryUnits checks the plan of a tiny training step of every
// unit design with the checker, and runs the step in the planned memory:
// bitwise the interpreter's outputs and updates, in float64 and float32.
func TestPlanMemoryUnits(t *testing.T) {
	t.Parallel()
	for ci, c := range memCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := memStep(t, memArch(c))
			before := ir.Print(g)
			p := mustPlan(t, g)
			if ir.Print(g) != before {
				t.Fatal("PlanMemory changed the graph")
			}
			checkPlan(t, g, p)
			if len(p.Aliases) == 0 || p.ArenaBytes >= p.NaiveBytes {
				t.Errorf("%d in-place decisions, arena %d, naive %d: the plan shares nothing", len(p.Aliases), p.ArenaBytes, p.NaiveBytes)
			}
			feeds := memFeeds(g, uint64(ci+1))
			for _, opt := range []interp.Options{{Step: 3}, {Step: 3, Float32: true}} {
				want, err := interp.Run(g, feeds, opt)
				if err != nil {
					t.Fatal(err)
				}
				planSameResults(t, runPlanned(t, g, p, feeds, opt), want)
			}
		})
	}
}

// TestPlanMemoryCatchesOverlap makes sure the checker and the planned
// executor would notice a wrong plan: two live buffers moved onto each
// other, and a buffer that dies too early.
func TestPlanMemoryCatchesOverlap(t *testing.T) {
	g := memStep(t, memArch(memCases[1]))
	p := mustPlan(t, g)
	feeds := memFeeds(g, 1)
	want, err := interp.Run(g, feeds, interp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Find a long-lived buffer and one live during its lifetime, and put
	// the second on top of the first.
	var long, other int = -1, -1
	for i, b := range p.Buffers {
		if b.End-b.Start > len(g.Ops)/4 && b.Start > 0 {
			long = i
			break
		}
	}
	if long < 0 {
		t.Fatal("no long-lived buffer")
	}
	for i, b := range p.Buffers {
		lb := p.Buffers[long]
		if i != long && b.Start > lb.Start && b.End < lb.End && b.Size >= 64 && b.Offset != lb.Offset {
			other = i
			break
		}
	}
	if other < 0 {
		t.Fatal("no buffer inside the long-lived one's lifetime")
	}
	bad := *p
	bad.Offsets = map[*ir.Value]int64{}
	for v, off := range p.Offsets {
		bad.Offsets[v] = off
	}
	for _, v := range p.Buffers[other].Values {
		bad.Offsets[v] = p.Buffers[long].Offset
	}
	bad.Buffers = slices.Clone(p.Buffers)
	bad.Buffers[other].Offset = p.Buffers[long].Offset
	got := runPlanned(t, g, &bad, feeds, interp.Options{})
	if planDiffers(got, want) == "" {
		t.Error("the planned executor did not notice two live buffers at one offset")
	}
	// A buffer that dies as soon as it is defined.
	early := *p
	early.Buffers = slices.Clone(p.Buffers)
	early.Buffers[long].End = early.Buffers[long].Start
	got = runPlanned(t, g, &early, feeds, interp.Options{})
	if planDiffers(got, want) == "" {
		t.Error("the planned executor did not notice a buffer freed before its last use")
	}
}

// differs names the first output or update where two results differ.
func planDiffers(got, want *interp.Result) string {
	for _, m := range []struct{ got, want map[string]*interp.Tensor }{{got.Outputs, want.Outputs}, {got.Updates, want.Updates}} {
		for name, w := range m.want {
			g := m.got[name]
			for i := range w.Data {
				if math.Float64bits(g.Data[i]) != math.Float64bits(w.Data[i]) {
					return name
				}
			}
		}
	}
	return ""
}

// TestPlanMemoryPreact164 checks the plan of preact-resnet-164's training
// step at batch 2 with the checker.
func TestPlanMemoryPreact164(t *testing.T) {
	t.Parallel()
	a, err := resnet.LoadPreset("preact-resnet-164")
	if err != nil {
		t.Fatal(err)
	}
	g := memStep(t, a)
	p := mustPlan(t, g)
	checkPlan(t, g, p)
	if r := float64(p.ArenaBytes) / float64(p.LowerBoundBytes); r > 1.05 {
		t.Errorf("arena %d is %.3f times the lower bound %d", p.ArenaBytes, r, p.LowerBoundBytes)
	}
}

// inPlaceCase is a small graph and the in-place decisions it must get.
type inPlaceCase struct {
	name  string
	build func(g *ir.Graph)
	want  []string // "kind: result name <- argument name", "kind: result name -> state name"
}

func planX(g *ir.Graph, name string) *ir.Value {
	return g.Decl(ir.Input, name, ir.T32(2, 4, 3, 3), nil)
}

func planW(g *ir.Graph, name string) *ir.Value {
	return g.Decl(ir.Param, name, ir.T32(4, 4, 1, 1), nil)
}

func planOp(g *ir.Graph, kind ir.OpKind, name string, attrs ir.Attrs, args ...*ir.Value) *ir.Value {
	return g.MustOp(kind, name, attrs, args...).Results[0]
}

// inPlaceCases are hand-worked: each says why a decision is or is not
// legal.
var inPlaceCases = []inPlaceCase{
	{"relu takes the conv output it reads last", func(g *ir.Graph) {
		c := planOp(g, ir.Conv2D, "conv", nil, planX(g, "x"), planW(g, "w"))
		g.AddOutput("y", planOp(g, ir.ReLU, "relu", nil, c))
	}, []string{"relu: relu <- conv"}},
	{"an input is never overwritten", func(g *ir.Graph) {
		g.AddOutput("y", planOp(g, ir.ReLU, "relu", nil, planX(g, "x")))
	}, nil},
	{"an argument read later is kept; add takes the relu", func(g *ir.Graph) {
		c := planOp(g, ir.Conv2D, "conv", nil, planX(g, "x"), planW(g, "w"))
		r := planOp(g, ir.ReLU, "relu", nil, c)
		g.AddOutput("y", planOp(g, ir.Add, "add", nil, r, c))
	}, []string{"add: add <- relu"}},
	{"add takes its second argument when the first lives on", func(g *ir.Graph) {
		c := planOp(g, ir.Conv2D, "conv", nil, planX(g, "x"), planW(g, "w"))
		d := planOp(g, ir.Conv2D, "conv2", nil, c, planW(g, "w2"))
		s := planOp(g, ir.Add, "add", nil, c, d)
		g.AddOutput("y", planOp(g, ir.Mul, "mul", nil, s, c))
	}, []string{"add: add <- conv2", "mul: mul <- add"}},
	{"a graph output is never overwritten", func(g *ir.Graph) {
		c := planOp(g, ir.Conv2D, "conv", nil, planX(g, "x"), planW(g, "w"))
		g.AddOutput("c", c)
		g.AddOutput("y", planOp(g, ir.ReLU, "relu", nil, c))
	}, nil},
	{"a conv is not elementwise", func(g *ir.Graph) {
		r := planOp(g, ir.ReLU, "relu", nil, planX(g, "x"))
		g.AddOutput("y", planOp(g, ir.Conv2D, "conv", nil, r, planW(g, "w")))
	}, nil},
	{"a chain of scales shares one buffer", func(g *ir.Graph) {
		c := planOp(g, ir.Conv2D, "conv", nil, planX(g, "x"), planW(g, "w"))
		a := planOp(g, ir.Scale, "s1", ir.Attrs{"factor": 2.0}, c)
		g.AddOutput("y", planOp(g, ir.Scale, "s2", ir.Attrs{"factor": 3.0}, a))
	}, []string{"scale: s1 <- conv", "scale: s2 <- s1"}},
	{"a relayout changes the type", func(g *ir.Graph) {
		x := g.Decl(ir.Input, "x", ir.T32(2, 8, 2, 2), nil)
		r := planOp(g, ir.ReLU, "relu", nil, x)
		l := planOp(g, ir.Relayout, "blocked", ir.Attrs{"layout": "nchw8c"}, r)
		g.AddOutput("y", planOp(g, ir.ReLU, "relu2", nil, l))
	}, []string{"relu: relu2 <- blocked"}},
	{"the residual of a fused conv is added in place", func(g *ir.Graph) {
		r := planOp(g, ir.ReLU, "relu", nil, planX(g, "x"))
		sc := g.Decl(ir.Param, "scale", ir.T32(4), nil)
		sh := g.Decl(ir.Param, "shift", ir.T32(4), nil)
		y := planOp(g, ir.Conv2DFused, "conv", ir.Attrs{"prologue": "affine_relu", "residual": true}, planX(g, "x2"), planW(g, "w"), sc, sh, r)
		g.AddOutput("y", y)
	}, []string{"conv2d_fused: conv <- relu"}},
	{"a fused conv's input is not its residual", func(g *ir.Graph) {
		r := planOp(g, ir.ReLU, "relu", nil, planX(g, "x"))
		y := planOp(g, ir.Conv2DFused, "conv", ir.Attrs{"prologue": "relu"}, r, planW(g, "w"))
		g.AddOutput("y", y)
	}, nil},
	{"stats_grad writes over the tensor it summed", func(g *ir.Graph) {
		y := planOp(g, ir.ReLU, "relu", nil, planX(g, "x"))
		d := g.Decl(ir.Param, "dsum", ir.T32(4), nil)
		q := g.Decl(ir.Param, "dsumsq", ir.T32(4), nil)
		g.AddOutput("dy", planOp(g, ir.StatsGrad, "sg", nil, d, q, y))
	}, []string{"stats_grad: sg <- relu"}},
	{"sgd and ema write into the state they update", func(g *ir.Graph) {
		w := g.Decl(ir.Param, "w", ir.T32(4), nil)
		m := g.Decl(ir.State, "w.momentum", ir.T32(4), nil)
		run := g.Decl(ir.State, "bn.mean", ir.T32(4), nil)
		lr := g.Decl(ir.Input, "lr", ir.T32(), nil)
		gr := planOp(g, ir.Scale, "grad", ir.Attrs{"factor": 2.0}, w)
		sgd := g.MustOp(ir.SGD, "sgd", nil, w, gr, m, lr)
		g.AddUpdate(w, sgd.Results[0])
		g.AddUpdate(m, sgd.Results[1])
		g.AddUpdate(run, planOp(g, ir.EMA, "ema", nil, run, gr))
	}, []string{"sgd: sgd#0 -> w", "sgd: sgd#1 -> w.momentum", "ema: ema -> bn.mean"}},
	{"an update whose target is read later needs a buffer", func(g *ir.Graph) {
		w := g.Decl(ir.Param, "w", ir.T32(4), nil)
		m := g.Decl(ir.State, "w.momentum", ir.T32(4), nil)
		lr := g.Decl(ir.Input, "lr", ir.T32(), nil)
		gr := planOp(g, ir.Scale, "grad", ir.Attrs{"factor": 2.0}, w)
		sgd := g.MustOp(ir.SGD, "sgd", nil, w, gr, m, lr)
		g.AddUpdate(w, sgd.Results[0])
		g.AddUpdate(m, sgd.Results[1])
		g.AddOutput("w2", planOp(g, ir.Scale, "later", ir.Attrs{"factor": 2.0}, w))
	}, []string{"sgd: sgd#1 -> w.momentum"}},
}

// TestPlanMemoryInPlace checks hand-worked in-place decisions, legal and
// not, and the checker and planned executor on each graph.
func TestPlanMemoryInPlace(t *testing.T) {
	for _, c := range inPlaceCases {
		t.Run(c.name, func(t *testing.T) {
			g := ir.New("case", ir.Train)
			c.build(g)
			if err := ir.Verify(g); err != nil {
				t.Fatal(err)
			}
			p := mustPlan(t, g)
			name := func(v *ir.Value) string {
				if len(v.Def.Results) > 1 {
					return fmt.Sprintf("%s#%d", v.Def.Name, v.Index)
				}
				return v.Def.Name
			}
			var got []string
			for _, a := range p.Aliases {
				arrow := " <- "
				if a.State {
					arrow = " -> "
				}
				got = append(got, fmt.Sprintf("%s: %s%s%s", g.Ops[a.Op].Kind, name(a.Value), arrow, name(a.Into)))
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("in-place decisions (-want +got):\n%s", d)
			}
			checkPlan(t, g, p)
			feeds := memFeeds(g, 7)
			want, err := interp.Run(g, feeds, interp.Options{})
			if err != nil {
				t.Fatal(err)
			}
			planSameResults(t, runPlanned(t, g, p, feeds, interp.Options{}), want)
		})
	}
}

// TestPlanMemoryPlacement checks the greedy placement on a case worked by
// hand: sizes 4, 2, 2, 1 (in units of Alignment) with lifetimes that let
// the second 2 sit beside the first 4 but not beside the first 2.
func TestPlanMemoryPlacement(t *testing.T) {
	const A = Alignment
	bufs := []planBuf{
		{start: 0, end: 3, size: 2 * A}, // b0: placed second, at 4A (overlaps b1 and b2)
		{start: 2, end: 5, size: 4 * A}, // b1: largest, at 0
		{start: 4, end: 6, size: 2 * A}, // b2: overlaps b1 only: after b1 at 4A (b0 is dead)
		{start: 0, end: 1, size: 1 * A}, // b3: overlaps b0 only: at 0
	}
	arena := placeBuffers(bufs)
	got := []int64{bufs[0].offset, bufs[1].offset, bufs[2].offset, bufs[3].offset}
	if want := []int64{4 * A, 0, 4 * A, 0}; !slices.Equal(got, want) || arena != 6*A {
		t.Errorf("offsets %v, arena %d; want %v, %d", got, arena, want, 6*A)
	}
}

// TestPlanMemoryErrors checks that malformed graphs are errors, not
// panics.
func TestPlanMemoryErrors(t *testing.T) {
	other := ir.New("other", ir.Infer)
	foreign := planX(other, "x")
	cases := []struct {
		name  string
		build func() *ir.Graph
		want  string
	}{
		{"nil graph", func() *ir.Graph { return nil }, "nil graph"},
		{"argument from another graph", func() *ir.Graph {
			g := ir.New("g", ir.Infer)
			g.Ops = append(g.Ops, &ir.Op{Kind: ir.ReLU, Name: "relu", Args: []*ir.Value{foreign}, Results: []*ir.Value{{Type: foreign.Type}}})
			return g
		}, `op 0 relu "relu": argument 0 is not a value an earlier op defines`},
		{"argument defined later", func() *ir.Graph {
			g := ir.New("g", ir.Infer)
			x := planX(g, "x")
			r := g.MustOp(ir.ReLU, "relu", nil, x)
			s := g.MustOp(ir.ReLU, "relu2", nil, r.Result())
			g.Ops[1], g.Ops[2] = s, r
			return g
		}, `op 1 relu "relu2": argument 0 is not a value an earlier op defines`},
		{"update of an input", func() *ir.Graph {
			g := ir.New("g", ir.Train)
			x := planX(g, "x")
			g.AddUpdate(x, planOp(g, ir.ReLU, "relu", nil, x))
			return g
		}, "update 0: its target is not a param or state of the graph"},
		{"output not in the graph", func() *ir.Graph {
			g := ir.New("g", ir.Infer)
			g.AddOutput("y", foreign)
			return g
		}, `output "y" is not a value of the graph`},
		{"bad shape", func() *ir.Graph {
			g := ir.New("g", ir.Infer)
			g.Decl(ir.Input, "x", ir.T32(2, 0), nil)
			return g
		}, "has a dimension < 1"},
		{"nil op", func() *ir.Graph {
			g := ir.New("g", ir.Infer)
			g.Ops = append(g.Ops, nil)
			return g
		}, "op 0 is nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := PlanMemory(c.build())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "plan-memory: ") {
				t.Errorf("error %q does not name the pass", err)
			}
		})
	}
}

// TestPlanMemoryStored checks what the report says each unit stores for
// the backward pass on a case small enough to count by hand: two
// full-preact basic units of width 4 at 4x4, batch 2 (128 floats, 512
// bytes per activation; per-channel vectors take one 64-byte line).
func TestPlanMemoryStored(t *testing.T) {
	a := memArch(memCases[1])
	a.Stages = []resnet.Stage{{Units: 2, Width: 4, Stride: 1}}
	g := memStep(t, a)
	p := mustPlan(t, g)
	got := map[string]int64{}
	for _, s := range p.Stored {
		got[s.Name] = s.Bytes
	}
	// Each unit keeps its BN statistics (4 vectors), the outputs of relu1
	// (read by conv1.dw and relu1.dx), conv1 (read by the bn2 gradients)
	// and relu2 (conv2.dw, relu2.dx), and its add output (read by the next
	// BN's gradients); not its bnnorm outputs (read by the relus only) nor
	// its conv2 output (read by the add only). The head keeps its BN
	// statistics, its relu output, the pooled [2,4] (head.fc.dw) and the
	// logits [2,3] (loss.dx); x is read by stem.conv.dw.
	const act, vec = 512, 64
	want := map[string]int64{
		"x":      384,
		"stem":   act,
		"s1.u1":  4*vec + 4*act,
		"s1.u2":  4*vec + 4*act,
		"head":   2*vec + act + vec + vec,
		"labels": vec,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("stored bytes per group (-want +got):\n%s", d)
	}
	if p.BackwardStart >= len(g.Ops) || g.Ops[p.BackwardStart].Kind != ir.SoftmaxCEGrad {
		t.Errorf("backward starts at op %d, want the softmaxce_grad", p.BackwardStart)
	}
}

// TestPlanMemoryReport checks the text report and the JSON summary.
func TestPlanMemoryReport(t *testing.T) {
	a := memArch(memCases[4])
	g := memStep(t, a)
	p := mustPlan(t, g)
	var b bytes.Buffer
	if err := p.WriteReport(&b); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("..", "testdata", "plan", "bottleneck-fullpreact-train.txt"), b.Bytes())

	js, err := json.Marshal(p.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{
		"arena_bytes": p.ArenaBytes, "state_bytes": p.StateBytes, "naive_bytes": p.NaiveBytes, "lower_bound_bytes": p.LowerBoundBytes,
	} {
		if got, ok := m[key].(float64); !ok || int64(got) != want || want <= 0 {
			t.Errorf("JSON %s = %v, want %d", key, m[key], want)
		}
	}
	if _, ok := m["extra_flops_percent"].(float64); !ok {
		t.Errorf("JSON has no number extra_flops_percent: %s", js)
	}
}

// TestPlanMemoryInference plans an inference graph: no backward part,
// nothing stored, and the planned executor agrees with the interpreter.
func TestPlanMemoryInference(t *testing.T) {
	g, err := resnet.Lower(memArch(memCases[5]), memBatch, ir.Infer)
	if err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, g)
	checkPlan(t, g, p)
	if len(p.Stored) != 0 || p.BackwardStart != len(g.Ops) {
		t.Errorf("inference plan stores %v, backward start %d of %d", p.Stored, p.BackwardStart, len(g.Ops))
	}
	feeds := memFeeds(g, 3)
	want, err := interp.Run(g, feeds, interp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	planSameResults(t, runPlanned(t, g, p, feeds, interp.Options{}), want)
}

func TestSizeString(t *testing.T) {
	for n, want := range map[int64]string{
		0:       "0 B",
		1023:    "1,023 B",
		1024:    "1.0 KiB (1,024 B)",
		3 << 29: "1.5 GiB (1,610,612,736 B)",
	} {
		if got := SizeString(n); got != want {
			t.Errorf("SizeString(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestPlanMemoryGoldenGraphs plans every graph of every pass's golden
// cases (inputs and expected outputs: unfused, fused, blocked), checks the
// plan, runs it in the planned memory where the graph runs in the
// interpreter, and rematerializes training steps to half their arena:
// a success must verify and compute the same, an error must leave the
// graph unchanged; neither may panic.
func TestPlanMemoryGoldenGraphs(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "passes", "*", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	planned := 0
	for _, path := range paths {
		a := golden.ReadArchive(t, path)
		for _, f := range a.Files {
			if !strings.HasSuffix(f.Name, ".ir") {
				continue
			}
			g, err := ir.Parse(path+":"+f.Name, f.Data)
			if err != nil || ir.Verify(g) != nil {
				continue // a case about a malformed graph
			}
			planned++
			name := strings.TrimPrefix(path, filepath.Join("..", "testdata", "passes")+string(filepath.Separator)) + ":" + f.Name
			t.Run(name, func(t *testing.T) {
				p := mustPlan(t, g)
				checkPlan(t, g, p)
				feeds := memFeeds(g, 5)
				want, err := interp.Run(g, feeds, interp.Options{})
				if err != nil {
					return // feeds the generic recipe cannot make (label ranges)
				}
				planSameResults(t, runPlanned(t, g, p, feeds, interp.Options{}), want)
				if g.Mode != ir.Train || p.BackwardStart == len(g.Ops) {
					return
				}
				// The tightest budget the pass can meet, if it can recompute
				// anything.
				c := g.Clone()
				before := ir.Print(c)
				_, err = Rematerialize(c, 1)
				var be *BudgetError
				if !errors.As(err, &be) || ir.Print(c) != before {
					t.Fatalf("Rematerialize with a 1-byte budget: %v; the graph changed: %v", err, ir.Print(c) != before)
				}
				if be.MinArena >= p.ArenaBytes {
					t.Logf("nothing to gain: %v", err)
					return
				}
				rep, err := Rematerialize(c, be.MinArena)
				if err != nil {
					t.Fatal(err)
				}
				if err := ir.Verify(c); err != nil {
					t.Fatalf("rematerialized graph does not verify: %v", err)
				}
				got, err := interp.Run(c, feeds, interp.Options{})
				if err != nil {
					t.Fatal(err)
				}
				planSameResults(t, got, want)
				t.Logf("rematerialized to %d bytes (of %d): %d ops cloned", rep.ArenaBytes, p.ArenaBytes, rep.OpsCloned)
			})
		}
	}
	if planned < 5 {
		t.Errorf("only %d graphs planned", planned)
	}
}
