package passes

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/resnetc/resnetc/ir"
)

// RematReport says what Rematerialize recomputed and what it costs.
type RematReport struct {
	Budget int64 // the arena budget in bytes; 0: no rematerialization asked for
	Units  int   // residual units found in the forward part
	// Cheap is what the units not recomputed whole recompute cheaply.
	Cheap RematCheap
	// Stream is what the segments that recompute only their residual
	// stream recompute.
	Stream RematStream
	// Stride is the checkpoint stride k: segments are runs of k
	// consecutive residual units. 0 when no segment is recomputed.
	Stride int
	// Segments are the segments recomputed whole, in network order.
	Segments []RematSegment
	// Checkpoints name the ops whose results the recomputed segments
	// start from: kept from the forward pass, read again by the clones.
	Checkpoints []string
	OpsCloned   int // in all
	// StepFLOPs counts the step before rematerialization (conv and linear
	// multiply-accumulates twice, every other op one per element);
	// ExtraFLOPs counts the cloned ops the same way.
	StepFLOPs  int64
	ExtraFLOPs int64
	// ArenaBytes and LowerBoundBytes are those of the plan of the graph as
	// Rematerialize leaves it.
	ArenaBytes      int64
	LowerBoundBytes int64
}

// RematCheap sums the cheap recomputations: in each of Units units, the
// values the backward part reads that elementwise ops and BatchNorm
// normalization compute from tensors it keeps anyway (a ReLU of a
// normalized conv output, when the conv output is stored for the
// BatchNorm gradient).
type RematCheap struct {
	Units       int
	OpsCloned   int
	FLOPs       int64
	StoredBytes int64 // no longer kept from the forward pass
}

// RematStream sums the stream segments: runs of Stride units whose
// residual stream (the input of each unit but the first, which is a
// checkpoint) is recomputed from the checkpoint before them by the ops
// that add to it (in a bottleneck unit, its last 1x1 convolution), reading
// the stored conv outputs inside the units rather than recomputing them.
type RematStream struct {
	Segments    int
	Units       int
	OpsCloned   int
	FLOPs       int64
	StoredBytes int64 // no longer kept from the forward pass
}

// RematSegment is one recomputed segment.
type RematSegment struct {
	First, Last string // unit names, "s1.u1"
	Units       int
	OpsCloned   int
	FLOPs       int64
	// StoredBytes is what the forward pass no longer keeps for the
	// backward pass: the aligned sizes of the values the clones replace.
	StoredBytes int64
}

// ExtraFLOPsPercent is ExtraFLOPs as a percentage of StepFLOPs.
func (r *RematReport) ExtraFLOPsPercent() float64 {
	if r.StepFLOPs == 0 {
		return 0
	}
	return 100 * float64(r.ExtraFLOPs) / float64(r.StepFLOPs)
}

// WriteReport writes the report as text.
func (r *RematReport) WriteReport(w io.Writer) error {
	var b strings.Builder
	r.write(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *RematReport) write(b *strings.Builder) {
	switch {
	case r.Budget == 0:
		b.WriteString("rematerialization: none (no budget)\n")
		return
	case r.OpsCloned == 0:
		fmt.Fprintf(b, "rematerialization: none needed: the arena fits the budget of %s\n", SizeString(r.Budget))
		return
	}
	fmt.Fprintf(b, "rematerialization to a budget of %s (%d units):\n", SizeString(r.Budget), r.Units)
	var rows [][2]string
	if c := r.Cheap; c.Units > 0 {
		rows = append(rows, [2]string{"  cheap", fmt.Sprintf("%d units recompute elementwise and BatchNorm outputs from stored tensors: %d ops, %s not stored",
			c.Units, c.OpsCloned, SizeString(c.StoredBytes))})
	}
	if r.Stride > 0 {
		rows = append(rows, [2]string{"  stride", fmt.Sprintf("a checkpoint every %d units", r.Stride)})
	}
	if c := r.Stream; c.Segments > 0 {
		rows = append(rows, [2]string{"  stream", fmt.Sprintf("%d segments (%d units) recompute only their residual stream, from stored conv outputs: %d ops, %s not stored",
			c.Segments, c.Units, c.OpsCloned, SizeString(c.StoredBytes))})
	}
	var names []string
	var stored int64
	for _, s := range r.Segments {
		stored += s.StoredBytes
		if s.First == s.Last {
			names = append(names, s.First)
		} else {
			names = append(names, s.First+".."+s.Last)
		}
	}
	if len(names) > 0 {
		rows = append(rows, [2]string{"  recomputed", fmt.Sprintf("%d segments: %s", len(names), strings.Join(names, ", "))})
	}
	if len(r.Checkpoints) > 0 {
		rows = append(rows, [2]string{"  checkpoints", strings.Join(r.Checkpoints, ", ")})
	}
	if len(names) > 0 {
		rows = append(rows, [2]string{"  not stored", SizeString(stored)})
	}
	rows = append(rows,
		[2]string{"  ops cloned", fmt.Sprint(r.OpsCloned)},
		[2]string{"  extra FLOPs", fmt.Sprintf("%s (%.2f%% of the step's %s)", groupDigits(r.ExtraFLOPs), r.ExtraFLOPsPercent(), groupDigits(r.StepFLOPs))},
	)
	writeRows(b, rows)
}

// Rematerialize makes g's training step fit an arena of budget bytes by
// recomputing, during the backward pass, forward values it would otherwise
// keep from the forward pass: memory for compute, so that a 1001-layer
// network trains at full batch size.
//
// Residual units are the forward ops named "sX.uY." (the lowering's
// names). Three kinds of recomputation are combined:
//
//   - cheap: in one unit, the values the backward part reads that
//     elementwise ops and BatchNorm normalization compute from tensors it
//     keeps anyway (a ReLU of a normalized conv output, when the conv
//     output is kept for the BatchNorm gradient) are recomputed from
//     those tensors, for one pass over the data and no convolution;
//   - segments: a segment is a run of k consecutive units, and the output
//     of its last unit, the residual stream there, is a checkpoint that is
//     always kept. For a recomputed segment, every forward op of the
//     segment whose results the backward part reads is cloned, with what
//     it needs back to the segment's input checkpoint, params and batch
//     statistics;
//   - stream segments: for a run of k consecutive units, the residual
//     stream alone (the input of each unit but the first) is recomputed
//     from the checkpoint before them by the ops that add to it (a
//     bottleneck unit's last 1x1 convolution, a quarter of the unit's
//     FLOPs), which read the conv outputs inside the units that the
//     backward part keeps anyway. The stream is most of what a bottleneck
//     unit stores (its channels are 4 times its bottleneck's), so this
//     saves most of a whole segment's memory for a fraction of its FLOPs.
//
// Clones are placed just before the first backward op that reads one of
// them, and every backward read moves to the clones. Ops that update
// state (ema, sgd) are never cloned, so running statistics are updated
// once; ops with only per-channel results (batch statistics) are not
// cloned, their results are kept; a dropout clone draws the same mask (a
// function of the op's seed and the step). So the step computes exactly
// what it computed before, bit for bit. Clones are named after the op
// they copy, with ".remat" appended.
//
// Rematerialize chooses what to recompute for the fewest extra FLOPs
// whose plan (PlanMemory) fits. Candidates are ordered by stored bytes
// saved per FLOP: cheap recomputations first and alone if they suffice,
// then, for each k up to about twice the square root of the number of
// units, all cheap ones and stream and whole segments of k units (a whole
// segment replaces the stream segment of the same units); the shortest
// prefix whose live bytes fit is found by bisection, and the cheapest
// candidates are placed exactly. It returns a *BudgetError (wrapped in *Error), stating
// the smallest arena it reached, when even recomputing everything does
// not fit. A budget of 0 asks for nothing and leaves g unchanged; so does
// a budget the plan already fits. On error g is unchanged.
func Rematerialize(g *ir.Graph, budget int64) (*RematReport, error) {
	r, err := rematerialize(g, budget)
	if err != nil {
		return nil, &Error{Pass: "remat", Err: err}
	}
	return r, nil
}

func rematerialize(g *ir.Graph, budget int64) (*RematReport, error) {
	if budget < 0 {
		return nil, fmt.Errorf("budget %d bytes is negative", budget)
	}
	s, err := buildSched(g)
	if err != nil {
		return nil, err
	}
	rep := &RematReport{Budget: budget}
	for _, op := range g.Ops {
		rep.StepFLOPs += opFLOPs(op)
	}
	if budget == 0 {
		return rep, nil
	}
	bwd := backwardStart(g.Ops)
	if bwd == len(g.Ops) {
		return nil, errors.New("graph has no backward pass: rematerialization recomputes forward values for the backward part of a training step (run autodiff first)")
	}
	l := s.liveness()
	lb, _ := s.peak(l, false)
	rep.LowerBoundBytes = lb
	if lb <= budget {
		if arena := placeBuffers(s.buffers(l)); arena <= budget {
			rep.ArenaBytes = arena
			return rep, nil
		}
	}
	r := newRemat(s, bwd)
	rep.Units = len(r.units)

	// A candidate is a stride k and an order of items (cheap
	// recomputations of single units, segments of k units), of which a
	// prefix is taken. Items go in order of stored bytes saved per FLOP.
	type candidate struct {
		k     int
		items []*segment
		m     int // how many are taken
		flops int64
	}
	byRatio := func(items []*segment) {
		slices.SortStableFunc(items, func(a, b *segment) int {
			// Cross-multiplied, in float64 to stay clear of overflow.
			return cmp.Compare(float64(b.stored)*float64(a.flops), float64(a.stored)*float64(b.flops))
		})
	}
	// shortest returns the shortest prefix of items, at least lo long,
	// whose live bytes fit, by bisection (the whole list fits).
	shortest := func(items []*segment, lo int) candidate {
		hi := len(items)
		for lo < hi {
			mid := (lo + hi) / 2
			if r.lowerBound(effective(items[:mid])) <= budget {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		c := candidate{items: items, m: lo}
		for _, it := range effective(items[:lo]) {
			c.flops += it.flops
		}
		return c
	}
	// The lower bound is what any placement needs; the real placement
	// checks a candidate, taking more items while the arena does not fit.
	const maxPlacements = 24
	placements := 0
	try := func(k int, items []*segment) bool {
		placements++
		chosen := effective(items)
		t := r.s.withSegments(chosen)
		tl := t.liveness()
		arena := placeBuffers(t.buffers(tl))
		if arena > budget {
			return false
		}
		slices.SortFunc(chosen, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
		r.apply(g, chosen)
		rep.ArenaBytes = arena
		rep.LowerBoundBytes, _ = t.peak(tl, false)
		r.describe(rep, k, chosen)
		return true
	}
	tryGrowing := func(c candidate) bool {
		for m := c.m; m <= len(c.items) && placements < maxPlacements; {
			if try(c.k, c.items[:m]) {
				return true
			}
			if m == len(c.items) {
				break
			}
			m = min(len(c.items), m+max(1, (len(c.items)-m)/4))
		}
		return false
	}

	// Cheap recomputations alone, when they are enough.
	cheap := slices.Clone(r.cheap)
	byRatio(cheap)
	best := candidate{items: cheap, m: len(cheap)}
	bestLB := int64(math.MaxInt64)
	if len(cheap) > 0 {
		bestLB = r.lowerBound(cheap)
		if bestLB <= budget && tryGrowing(shortest(cheap, 1)) {
			return rep, nil
		}
	}
	// Then every cheap item and segments of k units.
	var cands []candidate
	kmax := min(len(r.units), 2*int(math.Sqrt(float64(len(r.units))))+8)
	for k := 1; k <= kmax; k++ {
		segs := r.segments(k)
		if len(segs) == 0 {
			continue
		}
		segs = append(segs, r.streams(k)...)
		byRatio(segs)
		items := append(slices.Clone(cheap), segs...)
		all := r.lowerBound(effective(items))
		if all < bestLB {
			best, bestLB = candidate{k: k, items: items, m: len(items)}, all
		}
		if all > budget {
			continue
		}
		c := shortest(items, len(cheap)+1)
		c.k = k
		cands = append(cands, c)
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(a.flops, b.flops) })
	for _, c := range cands {
		if tryGrowing(c) {
			return rep, nil
		}
	}
	if len(best.items) == 0 {
		arena := placeBuffers(s.buffers(l))
		return nil, &BudgetError{Budget: budget, MinArena: arena, MinLowerBound: lb, NoRematLowerBound: lb}
	}
	if try(best.k, best.items) {
		return rep, nil
	}
	all := effective(best.items)
	t := r.s.withSegments(all)
	e := &BudgetError{
		Budget:            budget,
		MinArena:          placeBuffers(t.buffers(t.liveness())),
		MinLowerBound:     bestLB,
		Stride:            best.k,
		NoRematLowerBound: lb,
	}
	for _, it := range all {
		switch {
		case it.cheap:
			e.CheapUnits++
		case !it.stream:
			e.Segments++
		}
	}
	return nil, e
}

// effective drops from items what other items among them recompute: the
// cheap recomputations and stream segments of units that a segment
// recomputes whole, and cheap recomputations that clone an op a stream
// segment clones (when the residual stream is an elementwise op's
// result).
func effective(items []*segment) []*segment {
	whole := map[int]bool{}
	for _, it := range items {
		if !it.cheap && !it.stream {
			for u := it.first; u <= it.last; u++ {
				whole[u] = true
			}
		}
	}
	streamOps := map[int32]bool{}
	for _, it := range items {
		if it.stream && !whole[it.first] {
			for _, i := range it.ops {
				streamOps[i] = true
			}
		}
	}
	var out []*segment
	for _, it := range items {
		switch {
		case (it.cheap || it.stream) && whole[it.first]:
		case it.cheap && slices.ContainsFunc(it.ops, func(i int32) bool { return streamOps[i] }):
		default:
			out = append(out, it)
		}
	}
	return out
}

// BudgetError is Rematerialize's error when no choice of recomputation
// fits the budget. It says how close the pass can get.
type BudgetError struct {
	Budget int64
	// MinArena is the smallest arena found, recomputing cheaply in
	// CheapUnits units and whole Segments segments of Stride units; both
	// counts are 0 when there is nothing to recompute.
	MinArena      int64
	MinLowerBound int64
	Stride        int
	Segments      int
	CheapUnits    int
	// NoRematLowerBound is the live-bytes peak without recomputation.
	NoRematLowerBound int64
}

func (e *BudgetError) Error() string {
	if e.Segments == 0 && e.CheapUnits == 0 {
		return fmt.Sprintf("budget of %s cannot be met: the arena needs %s (lower bound %s) and the graph has no residual unit (ops named sX.uY.) whose forward values the backward part reads",
			SizeString(e.Budget), SizeString(e.MinArena), SizeString(e.MinLowerBound))
	}
	var how []string
	if e.Segments > 0 {
		how = append(how, fmt.Sprintf("all %d segments with a checkpoint every %d units", e.Segments, e.Stride))
	}
	switch {
	case e.CheapUnits > 0 && e.Segments > 0:
		how = append(how, fmt.Sprintf("the cheap ops of %d more units", e.CheapUnits))
	case e.CheapUnits > 0:
		how = append(how, fmt.Sprintf("the cheap ops of %d units", e.CheapUnits))
	}
	return fmt.Sprintf("budget of %s cannot be met: the smallest arena is %s (lower bound %s), recomputing %s; without recomputation the arena needs at least %s",
		SizeString(e.Budget), SizeString(e.MinArena), SizeString(e.MinLowerBound), strings.Join(how, " and "), SizeString(e.NoRematLowerBound))
}

// remat is the analysis of one Rematerialize call.
type remat struct {
	s      *sched
	units  []*unit
	unitOf []int32    // per op: index in units, -1 outside any unit or after bwd
	def    []int32    // per value: the index of the op defining it
	uses   [][]usePos // per value: its uses from bwd on
	clone  []bool     // per op: may be cloned
	cheap  []*segment // per unit with something to gain: its cheap recomputation
}

type usePos struct{ op, pos int32 }

// unit is one residual unit's forward ops.
type unit struct {
	name string
	ops  []int32        // forward ops, in schedule order
	out  map[int32]bool // values a forward op of another unit (or outside any) reads: the residual stream
}

// segment is a run of units and the clones that recompute it.
type segment struct {
	first, last int     // unit indices
	ops         []int32 // ops to clone, in schedule order
	at          int32   // the clones go just before this op
	redirects   []usePos
	flops       int64
	stored      int64 // aligned bytes of the values whose backward reads move to clones
	checkpoints []int32
	// cheap items recompute only the cheap ops of one unit from tensors
	// the backward part reads anyway; stream items only the residual
	// stream of their units, from the checkpoint before them and tensors
	// the backward part reads anyway; the others recompute whole units
	// from the checkpoint before them.
	cheap, stream bool
}

func newRemat(s *sched, bwd int) *remat {
	r := &remat{
		s:      s,
		unitOf: make([]int32, len(s.ops)),
		uses:   make([][]usePos, len(s.vals)),
		clone:  make([]bool, len(s.ops)),
	}
	r.def = make([]int32, len(s.vals))
	for i, op := range s.ops {
		for _, v := range op.res {
			r.def[v] = int32(i)
		}
	}
	updated := make([]bool, len(s.vals))
	for _, u := range s.updates {
		updated[u[1]] = true
	}
	index := map[string]int32{}
	for i, op := range s.ops {
		r.unitOf[i] = -1
		if i >= bwd {
			for p, a := range op.args {
				r.uses[a] = append(r.uses[a], usePos{int32(i), int32(p)})
			}
			continue
		}
		if op.op.Kind.IsDecl() {
			continue
		}
		r.clone[i] = cloneable(op.op) && !slices.ContainsFunc(op.res, func(v int32) bool { return updated[v] })
		name, ok := unitPrefix(op.op.Name)
		if !ok {
			continue
		}
		u, ok := index[name]
		if !ok {
			u = int32(len(r.units))
			index[name] = u
			r.units = append(r.units, &unit{name: name, out: map[int32]bool{}})
		}
		r.unitOf[i] = u
		r.units[u].ops = append(r.units[u].ops, int32(i))
	}
	for i, op := range s.ops[:bwd] {
		for _, a := range op.args {
			if du := r.unitOf[r.def[a]]; du >= 0 && du != r.unitOf[i] {
				r.units[du].out[a] = true
			}
		}
	}
	r.cheap = r.cheapItems()
	return r
}

// cloneable reports whether a forward op may be recomputed: not a
// declaration or a running-statistics update, and with a result larger
// than a per-channel vector (those are kept: they cost nothing to store
// and a pass over the data to recompute).
func cloneable(op *ir.Op) bool {
	if op.Kind.IsDecl() || op.Kind == ir.EMA || isBackwardKind(op.Kind) {
		return false
	}
	return slices.ContainsFunc(op.Results, func(v *ir.Value) bool { return len(v.Type.Shape) >= 2 })
}

// segments returns the segments of k units that have something to
// recompute, in network order.
func (r *remat) segments(k int) []*segment { return r.partition(k, false) }

// streams returns the stream segments of k units that have something to
// recompute, in network order.
func (r *remat) streams(k int) []*segment { return r.partition(k, true) }

func (r *remat) partition(k int, stream bool) []*segment {
	var segs []*segment
	for first := 0; first < len(r.units); first += k {
		if sg := r.segment(first, min(first+k, len(r.units))-1, stream); sg != nil {
			segs = append(segs, sg)
		}
	}
	return segs
}

// segment plans the recomputation of units first..last, whole or only
// their residual stream, or returns nil when the backward part reads
// nothing it could recompute.
func (r *remat) segment(first, last int, stream bool) *segment {
	s := r.s
	keep := r.units[last].out
	in := func(op int32) bool { u := r.unitOf[op]; return int(u) >= first && int(u) <= last }
	// inStream says whether a value is the residual stream inside the
	// segment: read by a later unit, and not the checkpoint after it.
	inStream := func(v int32) bool {
		u := r.unitOf[r.def[v]]
		return int(u) >= first && int(u) < last && r.units[u].out[v]
	}
	cloned := map[int32]bool{}
	var work []int32
	add := func(op int32) {
		if !cloned[op] {
			cloned[op] = true
			work = append(work, op)
		}
	}
	for u := first; u <= last; u++ {
		for _, i := range r.units[u].ops {
			if !r.clone[i] {
				continue
			}
			for _, v := range s.ops[i].res {
				if len(r.uses[v]) > 0 && !keep[v] && (!stream || inStream(v)) {
					add(i)
					break
				}
			}
		}
	}
	if len(work) == 0 {
		return nil
	}
	for len(work) > 0 {
		i := work[len(work)-1]
		work = work[:len(work)-1]
		for _, a := range s.ops[i].args {
			d := r.def[a]
			if d < 0 || !in(d) || !r.clone[d] || keep[a] {
				continue
			}
			// A stream segment reads what the backward part keeps
			// anyway from the forward pass.
			if stream && len(r.uses[a]) > 0 && !inStream(a) {
				continue
			}
			add(d)
		}
	}
	sg := r.newSegment(first, last, cloned, false)
	if stream {
		// The stored tensors the clones read are not checkpoints.
		sg.stream = true
		sg.checkpoints = slices.DeleteFunc(sg.checkpoints, func(a int32) bool { return in(r.def[a]) })
	}
	return sg
}

// newSegment lists the clones of the ops in cloned, the backward reads
// they take over and where they go.
func (r *remat) newSegment(first, last int, cloned map[int32]bool, cheap bool) *segment {
	s := r.s
	sg := &segment{first: first, last: last, at: math.MaxInt32, cheap: cheap}
	for i := range cloned {
		sg.ops = append(sg.ops, i)
	}
	slices.Sort(sg.ops)
	ckpt := map[int32]bool{}
	for _, i := range sg.ops {
		op := s.ops[i]
		sg.flops += opFLOPs(op.op)
		for _, v := range op.res {
			if len(r.uses[v]) > 0 {
				sg.stored += s.vals[v].bytes
			}
			for _, u := range r.uses[v] {
				sg.redirects = append(sg.redirects, u)
				sg.at = min(sg.at, u.op)
			}
		}
		for _, a := range op.args {
			if d := r.def[a]; !cloned[d] && !ckpt[a] && s.vals[a].rank >= 2 && s.vals[a].class != classState {
				ckpt[a] = true
				sg.checkpoints = append(sg.checkpoints, a)
			}
		}
	}
	return sg
}

// cheapKind reports whether recomputing an op costs one pass over its
// elements: elementwise ops, BatchNorm normalization, dropout (its mask
// is a hash of the index), option-A subsampling and relayouts.
func cheapKind(k ir.OpKind) bool {
	switch k {
	case ir.ReLU, ir.Sigmoid, ir.Scale, ir.Add, ir.Mul, ir.BNNorm, ir.AffineReLU, ir.Dropout, ir.SubsamplePad, ir.Relayout:
		return true
	}
	return false
}

// cheapItems plans, for each unit, the recomputation of the values the
// backward part reads that cheap ops of the unit compute from tensors
// kept anyway (such as a ReLU of a BatchNorm of a stored conv output):
// bytes saved for a pass over the data, with no convolution.
func (r *remat) cheapItems() []*segment {
	s := r.s
	canCheap := make([]bool, len(s.vals))
	// kept says whether a value stays in memory for the backward part
	// whatever the unit's cheap item does, or costs nothing to keep.
	kept := func(a int32) bool {
		v := s.vals[a]
		return v.class != classArena || v.rank < 2 || (len(r.uses[a]) > 0 && !canCheap[a])
	}
	var items []*segment
	for u, un := range r.units {
		for _, i := range un.ops {
			op := s.ops[i]
			if !r.clone[i] || !cheapKind(op.op.Kind) {
				continue
			}
			ok := true
			for _, a := range op.args {
				if !kept(a) && !(canCheap[a] && r.unitOf[r.def[a]] == int32(u)) {
					ok = false
					break
				}
			}
			for _, v := range op.res {
				canCheap[v] = ok
			}
		}
		cloned := map[int32]bool{}
		var work []int32
		for _, i := range un.ops {
			if canCheap[s.ops[i].res[0]] && slices.ContainsFunc(s.ops[i].res, func(v int32) bool { return len(r.uses[v]) > 0 }) {
				cloned[i] = true
				work = append(work, i)
			}
		}
		if len(work) == 0 {
			continue
		}
		for len(work) > 0 {
			i := work[len(work)-1]
			work = work[:len(work)-1]
			for _, a := range s.ops[i].args {
				if d := r.def[a]; !kept(a) && !cloned[d] {
					cloned[d] = true
					work = append(work, d)
				}
			}
		}
		items = append(items, r.newSegment(u, u, cloned, true))
	}
	return items
}

// lowerBound is the live-bytes peak of the schedule with segs recomputed.
func (r *remat) lowerBound(segs []*segment) int64 {
	t := r.s.withSegments(segs)
	lb, _ := t.peak(t.liveness(), false)
	return lb
}

// withSegments returns a trial schedule: s with the clones of segs
// inserted and the backward reads redirected. s is not changed.
func (s *sched) withSegments(segs []*segment) *sched {
	extraOps := 0
	for _, sg := range segs {
		extraOps += len(sg.ops)
	}
	// Blocks that share a position go in network order, whatever the
	// order segs were chosen in, so that a trial and the graph agree.
	segs = slices.Clone(segs)
	slices.SortFunc(segs, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
	t := &sched{
		vals:    slices.Grow(slices.Clone(s.vals), extraOps*2),
		ops:     make([]schedOp, 0, len(s.ops)+extraOps),
		outputs: s.outputs,
		updates: s.updates,
	}
	blocks := make(map[int32][][]schedOp)
	args := make(map[int32][]int32) // redirected ops' new arguments
	for _, sg := range segs {
		cloneOf := make(map[int32]int32, len(sg.ops)*2)
		block := make([]schedOp, 0, len(sg.ops))
		for _, i := range sg.ops {
			op := s.ops[i]
			c := schedOp{op: op.op, args: make([]int32, len(op.args)), res: make([]int32, len(op.res))}
			for j, a := range op.args {
				if ca, ok := cloneOf[a]; ok {
					a = ca
				}
				c.args[j] = a
			}
			for j, v := range op.res {
				c.res[j] = int32(len(t.vals))
				cloneOf[v] = c.res[j]
				t.vals = append(t.vals, s.vals[v])
			}
			block = append(block, c)
		}
		blocks[sg.at] = append(blocks[sg.at], block)
		for _, u := range sg.redirects {
			a, ok := args[u.op]
			if !ok {
				a = slices.Clone(s.ops[u.op].args)
				args[u.op] = a
			}
			a[u.pos] = cloneOf[s.ops[u.op].args[u.pos]]
		}
	}
	for i, op := range s.ops {
		for _, b := range blocks[int32(i)] {
			t.ops = append(t.ops, b...)
		}
		if a, ok := args[int32(i)]; ok {
			op.args = a
		}
		t.ops = append(t.ops, op)
	}
	return t
}

// apply rewrites g as withSegments does the schedule.
func (r *remat) apply(g *ir.Graph, segs []*segment) {
	ops := g.Ops
	blocks := make(map[int32][]*ir.Op)
	for _, sg := range segs {
		cloneOf := make(map[*ir.Value]*ir.Value, len(sg.ops)*2)
		for _, i := range sg.ops {
			o := ops[i]
			c := &ir.Op{Kind: o.Kind, Attrs: o.Attrs.Clone()}
			if o.Name != "" {
				c.Name = o.Name + ".remat"
			}
			for _, a := range o.Args {
				if ca, ok := cloneOf[a]; ok {
					a = ca
				}
				c.Args = append(c.Args, a)
			}
			for j, v := range o.Results {
				t := v.Type
				t.Shape = slices.Clone(t.Shape)
				cv := &ir.Value{Type: t, Def: c, Index: j}
				c.Results = append(c.Results, cv)
				cloneOf[v] = cv
			}
			blocks[sg.at] = append(blocks[sg.at], c)
		}
		for _, u := range sg.redirects {
			o := ops[u.op]
			cv, ok := cloneOf[o.Args[u.pos]]
			if !ok {
				panic(fmt.Sprintf("BUG: remat: %s argument %d has no clone", o, u.pos))
			}
			o.Args[u.pos] = cv
		}
	}
	out := make([]*ir.Op, 0, len(ops)+len(blocks))
	for i, op := range ops {
		out = append(out, blocks[int32(i)]...)
		out = append(out, op)
	}
	g.Ops = out
}

// describe fills the report's description of the chosen items, k being
// the stride of the segments among them.
func (r *remat) describe(rep *RematReport, k int, items []*segment) {
	seen := map[string]bool{}
	for _, sg := range items {
		rep.OpsCloned += len(sg.ops)
		rep.ExtraFLOPs += sg.flops
		if sg.cheap {
			rep.Cheap.Units++
			rep.Cheap.OpsCloned += len(sg.ops)
			rep.Cheap.FLOPs += sg.flops
			rep.Cheap.StoredBytes += sg.stored
			continue
		}
		rep.Stride = k
		if sg.stream {
			rep.Stream.Segments++
			rep.Stream.Units += sg.last - sg.first + 1
			rep.Stream.OpsCloned += len(sg.ops)
			rep.Stream.FLOPs += sg.flops
			rep.Stream.StoredBytes += sg.stored
		} else {
			rep.Segments = append(rep.Segments, RematSegment{
				First:       r.units[sg.first].name,
				Last:        r.units[sg.last].name,
				Units:       sg.last - sg.first + 1,
				OpsCloned:   len(sg.ops),
				FLOPs:       sg.flops,
				StoredBytes: sg.stored,
			})
		}
		for _, v := range sg.checkpoints {
			d := r.s.irv[v].Def
			name := d.Name
			if name == "" {
				name = string(d.Kind)
			}
			if !seen[name] {
				seen[name] = true
				rep.Checkpoints = append(rep.Checkpoints, name)
			}
		}
	}
}

// opFLOPs estimates an op's floating-point operations: two per
// multiply-accumulate of a convolution or linear layer (forward or
// gradient), one per element for everything else (the larger of what the
// op reads and writes), nothing for declarations.
func opFLOPs(op *ir.Op) int64 {
	elems := func(v *ir.Value) int64 { return int64(v.Type.Shape.Elems()) }
	largest := func() int64 {
		var n int64
		for _, v := range op.Args {
			n = max(n, elems(v))
		}
		for _, v := range op.Results {
			n = max(n, elems(v))
		}
		return n
	}
	// fused is the elementwise work of a fused prologue or epilogue.
	fused := func() int64 {
		if op.Kind == ir.Conv2DFused || op.Kind == ir.Conv2DDwFused {
			return largest()
		}
		return 0
	}
	// perOut is the multiply-accumulates per element of a conv's output:
	// Cin*K*K of its weight.
	perOut := func(w *ir.Value) int64 {
		s := w.Type.Shape
		if len(s) != 4 {
			return 0
		}
		return int64(s[1]) * int64(s[2]) * int64(s[3])
	}
	switch op.Kind {
	case ir.Input, ir.Param, ir.State:
		return 0
	case ir.Conv2D, ir.Conv2DFused, ir.Conv2DDx:
		if len(op.Args) < 2 || len(op.Results) < 1 {
			return largest()
		}
		out := op.Results[0]
		if op.Kind == ir.Conv2DDx {
			out = op.Args[0]
		}
		return 2*elems(out)*perOut(op.Args[1]) + fused()
	case ir.Conv2DDw, ir.Conv2DDwFused:
		if len(op.Args) < 2 || len(op.Results) < 1 {
			return largest()
		}
		return 2*elems(op.Args[0])*perOut(op.Results[0]) + fused()
	case ir.Linear, ir.LinearDx, ir.LinearDw:
		if len(op.Args) < 2 || len(op.Results) < 1 || len(op.Args[0].Type.Shape) != 2 {
			return largest()
		}
		w := op.Args[1] // [K,C] for linear and linear_dx
		if op.Kind == ir.LinearDw {
			w = op.Results[0]
		}
		return 2 * int64(op.Args[0].Type.Shape[0]) * elems(w)
	}
	return largest()
}
