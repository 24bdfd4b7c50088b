package passes

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/resnetc/resnetc/ir"
)

// Alignment is the byte alignment of every buffer in the arena: a cache
// line, which is also a multiple of the 32-byte AVX2 vector.
const Alignment = 64

// maxPlanBytes bounds any one tensor the planner accepts, and
// maxTotalBytes all of them together, so that no size, sum of sizes or
// offset (none exceeds the total) can overflow an int64.
const (
	maxPlanBytes  = int64(1) << 50
	maxTotalBytes = int64(1) << 60
)

// MemPlan is the memory plan of one graph: where every tensor of a step
// lives, and the figures that say how good the plan is. Declarations
// (params and state) live in state memory, which persists across steps;
// inputs and every op result live in one arena, allocated once, at the
// offsets the plan gives. The plan refers to the graph's schedule (g.Ops
// order) at the time it was made.
type MemPlan struct {
	Graph *ir.Graph

	// ArenaBytes is the size of the arena: the highest end of any buffer.
	ArenaBytes int64
	// LowerBoundBytes is the maximum, over the schedule, of the sizes of
	// the buffers live at once: no placement of these buffers can use a
	// smaller arena, so ArenaBytes/LowerBoundBytes measures the packing.
	LowerBoundBytes int64
	// NaiveBytes is the same peak when nothing is shared in place: every
	// input and op result in a buffer of its own from its definition to
	// its last use. It is what a framework that frees tensors by
	// reference counting but never reuses one in place needs.
	NaiveBytes int64

	// StateBytes is the size of every param and state declaration: weights
	// (ParamBytes), momentum buffers (MomentumBytes: the state an sgd op
	// reads as its momentum), running statistics (RunningBytes: the state
	// an ema op averages into, or a BatchNorm reads as its mean or
	// variance) and any other state (OtherStateBytes).
	StateBytes      int64
	ParamBytes      int64
	MomentumBytes   int64
	RunningBytes    int64
	OtherStateBytes int64

	// PeakOp is the index in g.Ops at which LowerBoundBytes is reached,
	// len(g.Ops) for the end of the step (outputs and update values).
	PeakOp int

	// Offsets gives the arena offset of every input and op result that
	// lives in the arena; values sharing a buffer in place share an
	// offset. Values computed in place into state memory are in InState
	// instead; declarations of params and state are in neither.
	Offsets map[*ir.Value]int64
	// InState maps an update value that is computed directly into the
	// memory of its target (an sgd's new weight or momentum, an ema's new
	// running statistic) to that target.
	InState map[*ir.Value]*ir.Value

	// Buffers are the arena's buffers, in order of first definition.
	Buffers []Buffer
	// Aliases are the in-place decisions, in schedule order.
	Aliases []Alias

	// BackwardStart is the index in g.Ops of the first op of the backward
	// pass (the first gradient or optimizer op), len(g.Ops) when there is
	// none. Ops before it are the forward part.
	BackwardStart int
	// Stored is what the forward part keeps for the backward part: the
	// bytes of forward values that some op from BackwardStart on reads,
	// grouped by unit ("s1.u2") or by the first component of the op's
	// name ("stem", "head", an input's name), in order of first definition.
	Stored []StoredGroup

	// Remat, when set (by the caller, from Rematerialize), is included in
	// the report.
	Remat *RematReport
}

// Buffer is one region of the arena and the values that occupy it in
// turn: the first defines it, each later one takes it over in place from
// the one before.
type Buffer struct {
	Values []*ir.Value
	Offset int64
	Size   int64 // aligned to Alignment
	// Start and End are the schedule positions (indices in g.Ops) from the
	// definition of the first value to the last use of the last one,
	// inclusive. An input starts at 0 (the caller's tensor is copied in at
	// the start of the step); a graph output or update value ends at
	// len(g.Ops), the end of the step.
	Start, End int
}

// Alias is one in-place decision: the result Value of op Op is written
// over Into. When State is false, Into is an argument whose last use is
// this op and Value takes its arena buffer; when it is true, Into is the
// param or state the update value replaces, and Value is computed directly
// into its state memory.
type Alias struct {
	Op    int
	Value *ir.Value
	Into  *ir.Value
	State bool
}

// StoredGroup is the forward-to-backward storage of one unit or part of
// the network.
type StoredGroup struct {
	Name  string
	Bytes int64
}

// PlanSummary is the plan's figures in a form that encodes to JSON.
type PlanSummary struct {
	Graph             string  `json:"graph"`
	Ops               int     `json:"ops"`
	ArenaBytes        int64   `json:"arena_bytes"`
	LowerBoundBytes   int64   `json:"lower_bound_bytes"`
	NaiveBytes        int64   `json:"naive_bytes"`
	StateBytes        int64   `json:"state_bytes"`
	ParamBytes        int64   `json:"param_bytes"`
	MomentumBytes     int64   `json:"momentum_bytes"`
	RunningBytes      int64   `json:"running_stats_bytes"`
	StoredBytes       int64   `json:"stored_bytes"`
	InPlace           int     `json:"in_place"`
	InState           int     `json:"in_state"`
	PeakOp            string  `json:"peak_op"`
	RematStride       int     `json:"remat_stride"`
	RematCheapUnits   int     `json:"remat_cheap_units"`
	RematSegments     int     `json:"remat_segments"`
	RematStreamUnits  int     `json:"remat_stream_units"`
	OpsCloned         int     `json:"ops_cloned"`
	ExtraFLOPs        int64   `json:"extra_flops"`
	ExtraFLOPsPercent float64 `json:"extra_flops_percent"`
}

// PlanMemory plans the memory of g's step in schedule order: liveness of
// every value, in-place reuse where it is legal, and offsets in one arena,
// so that generated code allocates once and never inside a step. It is an
// analysis and does not change g.
//
// A value lives from its defining op to its last use; graph outputs and
// update values live to the end of the step, inputs from its start. An
// op's first result takes over the buffer of an argument of the same type
// whose last use is this op when the op computes each output element from
// the same element of that argument only (relu, sigmoid, add, mul, scale,
// bnnorm, affine_relu, relu_grad, sigmoid_grad, the y of stats_grad, the
// residual r of conv2d_fused). An sgd or ema result that updates a param
// or state the op reads, and that nothing reads later, is computed
// straight into that state memory and takes no arena space.
//
// Buffers are placed greedily by size: largest first (ties by first
// definition), each at the lowest Alignment-aligned offset where it
// overlaps no placed buffer that is live at the same time.
func PlanMemory(g *ir.Graph) (*MemPlan, error) {
	s, err := buildSched(g)
	if err != nil {
		return nil, &Error{Pass: "plan-memory", Err: err}
	}
	l := s.liveness()
	bufs := s.buffers(l)
	arena := placeBuffers(bufs)
	lb, peakAt := s.peak(l, false)
	naive, _ := s.peak(l, true)

	p := &MemPlan{
		Graph:           g,
		ArenaBytes:      arena,
		LowerBoundBytes: lb,
		NaiveBytes:      naive,
		PeakOp:          int(peakAt),
		Offsets:         make(map[*ir.Value]int64),
		InState:         make(map[*ir.Value]*ir.Value),
	}
	members := make(map[int32][]*ir.Value, len(bufs))
	for v := range s.vals {
		if r := l.root[v]; r >= 0 {
			members[r] = append(members[r], s.irv[v])
		}
		if t := l.state[v]; t >= 0 {
			p.InState[s.irv[v]] = s.irv[t]
		}
	}
	for _, b := range bufs {
		vs := members[b.root]
		for _, v := range vs {
			p.Offsets[v] = b.offset
		}
		p.Buffers = append(p.Buffers, Buffer{Values: vs, Offset: b.offset, Size: b.size, Start: int(b.start), End: int(b.end)})
	}
	for _, a := range l.aliases {
		p.Aliases = append(p.Aliases, Alias{Op: int(a.op), Value: s.irv[a.val], Into: s.irv[a.into], State: a.state})
	}
	p.stateBytes(s)
	p.BackwardStart = backwardStart(g.Ops)
	p.Stored = storedGroups(g, p.BackwardStart)
	return p, nil
}

// stateBytes splits the state memory by role.
func (p *MemPlan) stateBytes(s *sched) {
	momentum := map[*ir.Value]bool{}
	running := map[*ir.Value]bool{}
	for _, op := range p.Graph.Ops {
		switch {
		case op.Kind == ir.SGD && len(op.Args) == 4:
			momentum[op.Args[2]] = true
		case op.Kind == ir.EMA && len(op.Args) == 2:
			running[op.Args[0]] = true
		case op.Kind == ir.BNNorm && len(op.Args) == 5:
			running[op.Args[1]], running[op.Args[2]] = true, true
		case op.Kind == ir.BNAffine && len(op.Args) == 4:
			running[op.Args[0]], running[op.Args[1]] = true, true
		case op.Kind == ir.BNFold && len(op.Args) >= 5:
			n := len(op.Args)
			running[op.Args[n-4]], running[op.Args[n-3]] = true, true
		}
	}
	for i, v := range s.vals {
		if v.class != classState {
			continue
		}
		x := s.irv[i]
		b := x.Type.Bytes()
		p.StateBytes += b
		switch {
		case x.Def.Kind == ir.Param:
			p.ParamBytes += b
		case momentum[x]:
			p.MomentumBytes += b
		case running[x]:
			p.RunningBytes += b
		default:
			p.OtherStateBytes += b
		}
	}
}

// isBackwardKind reports whether ops of kind k belong to the backward pass
// or the optimizer: gradient ops and sgd. Batch statistics, running
// averages and dropout are training-only but forward.
func isBackwardKind(k ir.OpKind) bool {
	switch k {
	case ir.BNStats, ir.EMA, ir.Dropout, ir.Moments:
		return false
	}
	return k.TrainingOnly()
}

// backwardStart returns the index of the first backward op, len(ops) if
// there is none.
func backwardStart(ops []*ir.Op) int {
	for i, op := range ops {
		if isBackwardKind(op.Kind) {
			return i
		}
	}
	return len(ops)
}

// unitPrefix returns "sX.uY" when name starts with "sX.uY." (X and Y
// decimal numbers): the residual unit the lowering named the op after.
func unitPrefix(name string) (string, bool) {
	i := 0
	digits := func() bool {
		j := i
		for i < len(name) && name[i] >= '0' && name[i] <= '9' {
			i++
		}
		return i > j
	}
	if i >= len(name) || name[i] != 's' {
		return "", false
	}
	i++
	if !digits() || !strings.HasPrefix(name[i:], ".u") {
		return "", false
	}
	i += 2
	if !digits() || i >= len(name) || name[i] != '.' {
		return "", false
	}
	return name[:i], true
}

// groupName is the report group of an op: its unit, else the first
// component of its name.
func groupName(op *ir.Op) string {
	if u, ok := unitPrefix(op.Name); ok {
		return u
	}
	first, _, _ := strings.Cut(op.Name, ".")
	if first == "" {
		return "(unnamed)"
	}
	return first
}

// storedGroups sums, per group, the aligned sizes of the arena values
// defined before bwd that an op from bwd on reads.
func storedGroups(g *ir.Graph, bwd int) []StoredGroup {
	stored := map[*ir.Value]bool{}
	for _, op := range g.Ops[bwd:] {
		for _, a := range op.Args {
			stored[a] = true
		}
	}
	var groups []StoredGroup
	index := map[string]int{}
	for _, op := range g.Ops[:bwd] {
		if op.Kind == ir.Param || op.Kind == ir.State {
			continue
		}
		for _, r := range op.Results {
			if !stored[r] {
				continue
			}
			name := groupName(op)
			i, ok := index[name]
			if !ok {
				i = len(groups)
				index[name] = i
				groups = append(groups, StoredGroup{Name: name})
			}
			groups[i].Bytes += alignUp(r.Type.Bytes())
		}
	}
	return groups
}

// StoredBytes is the total of Stored.
func (p *MemPlan) StoredBytes() int64 {
	var n int64
	for _, s := range p.Stored {
		n += s.Bytes
	}
	return n
}

// peakName describes the op at PeakOp.
func (p *MemPlan) peakName() string {
	if p.PeakOp >= len(p.Graph.Ops) || p.PeakOp < 0 {
		return "end of step"
	}
	op := p.Graph.Ops[p.PeakOp]
	if op.Name == "" {
		return fmt.Sprintf("op %d %s", p.PeakOp, op.Kind)
	}
	return fmt.Sprintf("op %d %s %q", p.PeakOp, op.Kind, op.Name)
}

// Summary returns the plan's figures for JSON output.
func (p *MemPlan) Summary() PlanSummary {
	s := PlanSummary{
		Graph:           p.Graph.Name,
		Ops:             len(p.Graph.Ops),
		ArenaBytes:      p.ArenaBytes,
		LowerBoundBytes: p.LowerBoundBytes,
		NaiveBytes:      p.NaiveBytes,
		StateBytes:      p.StateBytes,
		ParamBytes:      p.ParamBytes,
		MomentumBytes:   p.MomentumBytes,
		RunningBytes:    p.RunningBytes,
		StoredBytes:     p.StoredBytes(),
		PeakOp:          p.peakName(),
	}
	for _, a := range p.Aliases {
		if a.State {
			s.InState++
		} else {
			s.InPlace++
		}
	}
	if r := p.Remat; r != nil {
		s.RematStride = r.Stride
		s.RematCheapUnits = r.Cheap.Units
		s.RematSegments = len(r.Segments)
		s.RematStreamUnits = r.Stream.Units
		s.OpsCloned = r.OpsCloned
		s.ExtraFLOPs = r.ExtraFLOPs
		s.ExtraFLOPsPercent = r.ExtraFLOPsPercent()
	}
	return s
}

// WriteReport writes the plan as text: the arena against its lower bound
// and the naive figure, state memory by role, the peak, what each unit
// stores for the backward pass, and what was recomputed.
func (p *MemPlan) WriteReport(w io.Writer) error {
	var b strings.Builder
	s := p.Summary()
	fmt.Fprintf(&b, "memory plan of %q (%s, %d ops)\n", p.Graph.Name, p.Graph.Mode, len(p.Graph.Ops))
	ratio := 1.0
	if p.LowerBoundBytes > 0 {
		ratio = float64(p.ArenaBytes) / float64(p.LowerBoundBytes)
	}
	rows := [][2]string{
		{"arena", SizeString(p.ArenaBytes)},
		{"lower bound", fmt.Sprintf("%s (arena/lower bound %.3f)", SizeString(p.LowerBoundBytes), ratio)},
		{"naive", fmt.Sprintf("%s (every result in its own buffer until its last use)", SizeString(p.NaiveBytes))},
		{"peak", "at " + p.peakName()},
		{"in place", fmt.Sprintf("%d results take an argument's buffer, %d updates are computed into state", s.InPlace, s.InState)},
		{"state", fmt.Sprintf("%s: weights %s, momentum %s, running statistics %s",
			SizeString(p.StateBytes), SizeString(p.ParamBytes), SizeString(p.MomentumBytes), SizeString(p.RunningBytes))},
	}
	if p.OtherStateBytes > 0 {
		rows[len(rows)-1][1] += ", other " + SizeString(p.OtherStateBytes)
	}
	if p.BackwardStart < len(p.Graph.Ops) {
		rows = append(rows, [2]string{"stored", fmt.Sprintf("%s kept from the forward pass for the backward pass", SizeString(s.StoredBytes))})
	}
	writeRows(&b, rows)
	if len(p.Stored) > 0 {
		b.WriteString("\nstored for the backward pass:\n")
		var table [][2]string
		for _, run := range storedRuns(p.Stored) {
			table = append(table, [2]string{"  " + run.name, run.what})
		}
		writeRows(&b, table)
	}
	if p.Remat != nil {
		b.WriteString("\n")
		p.Remat.write(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeRows writes label-value rows with the values aligned.
func writeRows(b *strings.Builder, rows [][2]string) {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(b, "%-*s  %s\n", width, r[0], r[1])
	}
}

type storedRun struct{ name, what string }

// storedRuns collapses consecutive units of one stage that store the same
// bytes into one line, so a 1001-layer report stays readable.
func storedRuns(groups []StoredGroup) []storedRun {
	var runs []storedRun
	for i := 0; i < len(groups); {
		j := i + 1
		stage, isUnit := stageOf(groups[i].Name)
		for isUnit && j < len(groups) {
			st, ok := stageOf(groups[j].Name)
			if !ok || st != stage || groups[j].Bytes != groups[i].Bytes {
				break
			}
			j++
		}
		if j-i == 1 {
			runs = append(runs, storedRun{groups[i].Name, SizeString(groups[i].Bytes)})
		} else {
			runs = append(runs, storedRun{
				groups[i].Name + ".." + groups[j-1].Name,
				fmt.Sprintf("%s each (%d units, %s)", SizeString(groups[i].Bytes), j-i, SizeString(groups[i].Bytes*int64(j-i))),
			})
		}
		i = j
	}
	return runs
}

// stageOf returns "s2" for the unit "s2.u7".
func stageOf(unit string) (string, bool) {
	if _, ok := unitPrefix(unit + "."); !ok {
		return "", false
	}
	st, _, _ := strings.Cut(unit, ".")
	return st, true
}

// SizeString formats a byte count exactly and in binary units.
func SizeString(n int64) string {
	exact := groupDigits(n) + " B"
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	f, u := float64(n), ""
	for _, name := range units {
		if f < 1024 {
			break
		}
		f /= 1024
		u = name
	}
	if u == "" {
		return exact
	}
	return fmt.Sprintf("%.1f %s (%s)", f, u, exact)
}

// groupDigits writes n with thousands separators.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func alignUp(n int64) int64 { return (n + Alignment - 1) &^ (Alignment - 1) }

// The schedule in the dense form the planner works on: values and ops
// numbered, arguments as value numbers. PlanMemory builds it from a graph;
// Rematerialize builds trial schedules from it without touching the graph.

const (
	classArena uint8 = iota // an op result
	classInput              // fed by the caller: in the arena from the start of the step
	classState              // a param or state declaration: state memory
)

// schedVal holds no pointers, so that trial schedules copy cheaply.
type schedVal struct {
	bytes int64 // aligned size
	typ   int32 // equal for values of equal types (dtype, shape, layout)
	class uint8
	rank  uint8 // of the shape, at most 255
}

type schedOp struct {
	op   *ir.Op // the op; for a clone in a trial schedule, the op it copies
	args []int32
	res  []int32
}

type sched struct {
	vals    []schedVal
	irv     []*ir.Value // per value of a schedule built from a graph; nil in trial schedules
	ops     []schedOp
	outputs []int32
	updates [][2]int32 // target, value
}

// typeKey identifies a type for interning.
type typeKey struct {
	dtype  ir.DType
	layout ir.Layout
	rank   int
	dims   [6]int
	long   string // the type's text when the rank is above 6
}

func keyOf(t ir.Type) typeKey {
	k := typeKey{dtype: t.DType, layout: t.Layout, rank: len(t.Shape)}
	if len(t.Shape) > len(k.dims) {
		k.long = t.String()
	} else {
		copy(k.dims[:], t.Shape)
	}
	return k
}

// buildSched numbers g's values and checks what the planner relies on:
// every argument, output and update refers to a value an earlier op
// defines, each value is defined once, update targets are declarations,
// and sizes are positive and bounded. Errors name the op.
func buildSched(g *ir.Graph) (*sched, error) {
	if g == nil {
		return nil, errors.New("nil graph")
	}
	s := &sched{ops: make([]schedOp, len(g.Ops))}
	id := make(map[*ir.Value]int32, len(g.Ops)+len(g.Ops)/2)
	types := map[typeKey]int32{}
	var total int64
	for i, op := range g.Ops {
		if op == nil {
			return nil, fmt.Errorf("op %d is nil", i)
		}
		so := schedOp{op: op, args: make([]int32, len(op.Args)), res: make([]int32, len(op.Results))}
		for j, a := range op.Args {
			v, ok := id[a]
			if !ok {
				return nil, fmt.Errorf("op %d %s: argument %d is not a value an earlier op defines", i, op, j)
			}
			so.args[j] = v
		}
		if op.Kind.IsDecl() && (len(op.Args) != 0 || len(op.Results) != 1) {
			return nil, fmt.Errorf("op %d %s: a declaration has no arguments and one result", i, op)
		}
		for j, r := range op.Results {
			if r == nil {
				return nil, fmt.Errorf("op %d %s: result %d is nil", i, op, j)
			}
			if _, dup := id[r]; dup {
				return nil, fmt.Errorf("op %d %s: result %d is defined twice", i, op, j)
			}
			n, err := valueBytes(r.Type)
			if err != nil {
				return nil, fmt.Errorf("op %d %s: result %d: %v", i, op, j, err)
			}
			class := classArena
			switch op.Kind {
			case ir.Input:
				class = classInput
			case ir.Param, ir.State:
				class = classState
			}
			if len(r.Type.Shape) > 255 {
				return nil, fmt.Errorf("op %d %s: result %d has rank %d", i, op, j, len(r.Type.Shape))
			}
			key := keyOf(r.Type)
			typ, ok := types[key]
			if !ok {
				typ = int32(len(types))
				types[key] = typ
			}
			if total += alignUp(n); total > maxTotalBytes {
				return nil, fmt.Errorf("op %d %s: the graph's tensors add up to more than %d bytes", i, op, maxTotalBytes)
			}
			id[r] = int32(len(s.vals))
			so.res[j] = int32(len(s.vals))
			s.vals = append(s.vals, schedVal{bytes: alignUp(n), typ: typ, class: class, rank: uint8(len(r.Type.Shape))})
			s.irv = append(s.irv, r)
		}
		s.ops[i] = so
	}
	for _, o := range g.Outputs {
		v, ok := id[o.Value]
		if !ok {
			return nil, fmt.Errorf("output %q is not a value of the graph", o.Name)
		}
		s.outputs = append(s.outputs, v)
	}
	for i, u := range g.Updates {
		t, ok := id[u.Target]
		if !ok || s.vals[t].class != classState {
			return nil, fmt.Errorf("update %d: its target is not a param or state of the graph", i)
		}
		v, ok := id[u.Value]
		if !ok {
			return nil, fmt.Errorf("update %d of %q: its value is not a value of the graph", i, u.Target.Def.Name)
		}
		s.updates = append(s.updates, [2]int32{t, v})
	}
	return s, nil
}

// valueBytes is the storage size of t, checked to be positive and bounded.
func valueBytes(t ir.Type) (int64, error) {
	n := int64(4)
	for _, d := range t.Shape {
		if d < 1 {
			return 0, fmt.Errorf("type %v has a dimension < 1", t)
		}
		n *= int64(d)
		if n > maxPlanBytes {
			return 0, fmt.Errorf("type %v is larger than %d bytes", t, maxPlanBytes)
		}
	}
	return n, nil
}

// inPlaceArgs returns the argument positions whose buffer op's first
// result may take: those of the same type from which each output element
// reads only the element at the same index.
func inPlaceArgs(op *ir.Op) []int {
	switch op.Kind {
	case ir.ReLU, ir.Sigmoid, ir.Scale, ir.BNNorm, ir.AffineReLU:
		return []int{0}
	case ir.Add, ir.Mul, ir.ReLUGrad, ir.SigmoidGrad:
		return []int{0, 1}
	case ir.StatsGrad:
		return []int{2}
	case ir.AffineReLUGrad:
		if len(op.Args) == 5 {
			return []int{0, 4}
		}
		return []int{0}
	case ir.BNStatsGrad:
		if len(op.Args) == 5 {
			return []int{2, 4}
		}
		return []int{2}
	case ir.Conv2DFused:
		if r, ok := op.Attrs["residual"].(bool); ok && r && len(op.Args) > 2 {
			return []int{len(op.Args) - 1}
		}
	}
	return nil
}

// updatesInState reports whether op's results may be written straight
// into the state they update: ops that read and write each element of the
// state independently.
func updatesInState(k ir.OpKind) bool { return k == ir.SGD || k == ir.EMA }

// live is the liveness of a schedule and its in-place decisions.
type live struct {
	def, last []int32 // per value: schedule position of definition (0 for inputs) and of last use
	root      []int32 // per value: the value whose buffer it occupies (itself if it defines one); -1 outside the arena
	end       []int32 // per root value: the end of its buffer's lifetime
	state     []int32 // per value: the update target it is computed into, -1 if none
	aliases   []aliasRec
}

type aliasRec struct {
	op, val, into int32
	state         bool
}

// liveness computes when each value is live and which results share a
// buffer or live in state memory.
func (s *sched) liveness() *live {
	nv, n := len(s.vals), int32(len(s.ops))
	l := &live{
		def:   make([]int32, nv),
		last:  make([]int32, nv),
		root:  make([]int32, nv),
		end:   make([]int32, nv),
		state: make([]int32, nv),
	}
	for i, op := range s.ops {
		for _, r := range op.res {
			l.def[r], l.last[r] = int32(i), int32(i)
		}
		for _, a := range op.args {
			l.last[a] = int32(i) // ops are visited in order: the last write is the last use
		}
	}
	for v := range s.vals {
		l.root[v], l.state[v] = -1, -1
		if s.vals[v].class == classInput {
			l.def[v] = 0
		}
	}
	for _, v := range s.outputs {
		l.last[v] = n
	}
	target := make(map[int32]int32, len(s.updates))
	for _, u := range s.updates {
		l.last[u[1]] = n
		if _, ok := target[u[1]]; !ok {
			target[u[1]] = u[0]
		}
	}
	for i, op := range s.ops {
		i := int32(i)
		if op.op.Kind.IsDecl() {
			if r := op.res[0]; s.vals[r].class == classInput {
				l.root[r] = r
			}
			continue
		}
		for j, r := range op.res {
			l.root[r] = r
			if t, ok := target[r]; ok && updatesInState(op.op.Kind) && l.last[t] == i &&
				slices.Contains(op.args, t) && s.vals[t].typ == s.vals[r].typ {
				l.root[r], l.state[r] = -1, t
				l.aliases = append(l.aliases, aliasRec{op: i, val: r, into: t, state: true})
				continue
			}
			if j != 0 {
				continue
			}
			for _, pos := range inPlaceArgs(op.op) {
				a := op.args[pos]
				if s.vals[a].class == classArena && l.root[a] >= 0 && l.last[a] == i &&
					s.vals[a].typ == s.vals[r].typ {
					l.root[r] = l.root[a]
					l.aliases = append(l.aliases, aliasRec{op: i, val: r, into: a})
					break
				}
			}
		}
	}
	// Values are not numbered in schedule order in a trial schedule (clones
	// come last), so a root may be visited after the values sharing it.
	for v := range s.vals {
		if r := l.root[v]; r >= 0 {
			l.end[r] = max(l.end[r], l.last[v])
		}
	}
	return l
}

// peak returns the maximum over the schedule of the bytes live at once,
// and the first position where it is reached. Without naive, buffers are
// counted once however many values share them, and values in state memory
// not at all; with naive, every input and op result counts on its own.
func (s *sched) peak(l *live, naive bool) (int64, int32) {
	n := len(s.ops)
	diff := make([]int64, n+2)
	for v, sv := range s.vals {
		start, end := l.def[v], l.last[v]
		switch {
		case naive:
			if sv.class == classState {
				continue
			}
		case l.root[v] != int32(v):
			continue
		default:
			end = l.end[v]
		}
		diff[start] += sv.bytes
		diff[end+1] -= sv.bytes
	}
	var cur, best int64
	at := int32(0)
	for t := 0; t <= n; t++ {
		cur += diff[t]
		if cur > best {
			best, at = cur, int32(t)
		}
	}
	return best, at
}

// planBuf is a buffer being placed.
type planBuf struct {
	root       int32
	start, end int32
	size       int64
	offset     int64
}

// buffers lists the arena buffers of a schedule in order of definition.
func (s *sched) buffers(l *live) []planBuf {
	var bufs []planBuf
	for _, op := range s.ops {
		for _, r := range op.res {
			if l.root[r] == r {
				bufs = append(bufs, planBuf{root: r, start: l.def[r], end: l.end[r], size: s.vals[r].bytes})
			}
		}
	}
	// Inputs start at 0 whatever their position: keep the order of
	// first definition.
	slices.SortStableFunc(bufs, func(a, b planBuf) int { return cmp.Compare(a.start, b.start) })
	return bufs
}

// placeBuffers assigns offsets greedily by size and returns the arena
// size. Placed buffers are kept sorted by offset, so the lowest gap is
// found by one scan upward that skips buffers live at other times and
// stops at the first gap that fits.
func placeBuffers(bufs []planBuf) int64 {
	order := make([]int32, len(bufs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int {
		a, b := &bufs[i], &bufs[j]
		if c := cmp.Compare(b.size, a.size); c != 0 {
			return c
		}
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		return cmp.Compare(i, j)
	})
	var arena int64
	placed := make([]int32, 0, len(bufs)) // by offset
	for _, i := range order {
		b := &bufs[i]
		off := int64(0)
		for _, j := range placed {
			p := &bufs[j]
			if p.offset >= off+b.size {
				break
			}
			if p.start <= b.end && b.start <= p.end {
				off = max(off, p.offset+p.size)
			}
		}
		b.offset = off
		arena = max(arena, off+b.size)
		at, _ := slices.BinarySearchFunc(placed, off, func(j int32, off int64) int { return cmp.Compare(bufs[j].offset, off) })
		placed = slices.Insert(placed, at, i)
	}
	return arena
}
