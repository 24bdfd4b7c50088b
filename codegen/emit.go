package codegen

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/codegen/kernels"
	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"
	"github.com/resnetc/resnetc/passes"
)

// header starts every generated file.
const header = kernels.Header

// emitter writes one package.
type emitter struct {
	arch  *resnet.Arch
	opts  Options
	decls *declLayout
	steps []*stepCode // train, infer
	k     *kernelPlan

	arenaLen, scratchLen, wideLen int
	foldedLen                     int   // float32s of inference's folded weights (see hoist)
	macs                          int64 // per image, forward
	recompute                     int64 // FLOPs of a training step's recomputation
	sgd                           passes.SGDOptions
}

// stepCode is one compiled graph as the package runs it.
type stepCode struct {
	name   string // "train" or "infer"
	g      *ir.Graph
	plan   *passes.MemPlan
	l      *layout
	blocks []*block
	fns    []*blockFn
	x      ref // the input images
	lr     *ref
	labels *ref
	logits ref
	loss   *ref
}

func newEmitter(arch *resnet.Arch, opts Options, gt *ir.Graph, pt *passes.MemPlan, gi *ir.Graph, pi *passes.MemPlan) (*emitter, error) {
	decls, err := newDeclLayout(gt, gi)
	if err != nil {
		return nil, err
	}
	e := &emitter{arch: arch, opts: opts, decls: decls, k: newKernelPlan(opts.NoWinograd)}
	st, err := resnet.Describe(arch, 1)
	if err != nil {
		return nil, err
	}
	e.macs = st.MACs
	e.sgd = passes.DefaultSGD
	if opts.SGD != nil {
		e.sgd = *opts.SGD
	}
	for _, s := range []struct {
		name string
		g    *ir.Graph
		p    *passes.MemPlan
	}{{"train", gt, pt}, {"infer", gi, pi}} {
		l, err := newLayout(s.g, s.p, decls)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if s.name == "infer" {
			l.hoist(func(op *ir.Op) bool {
				_, ok := e.k.winograd(op)
				return ok
			})
			e.foldedLen = l.foldedLen
		}
		bs, fns, err := l.blocks(s.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		sc := &stepCode{name: s.name, g: s.g, plan: s.p, l: l, blocks: bs, fns: fns}
		find := func(name string, kind ir.OpKind) (*ref, error) {
			op := s.g.Lookup(name)
			if op == nil {
				return nil, nil
			}
			if op.Kind != kind {
				return nil, fmt.Errorf("%s: %q is a %s, want an %s", s.name, name, op.Kind, kind)
			}
			r := l.refs[op.Result()]
			return &r, nil
		}
		x, err := find("x", ir.Input)
		if err != nil {
			return nil, err
		}
		if x == nil {
			return nil, fmt.Errorf("%s: graph has no input \"x\"", s.name)
		}
		sc.x = *x
		if sc.lr, err = find("lr", ir.Input); err != nil {
			return nil, err
		}
		if sc.labels, err = find("labels", ir.Input); err != nil {
			return nil, err
		}
		lv := s.g.Output("logits")
		if lv == nil {
			return nil, fmt.Errorf("%s: graph has no output \"logits\"", s.name)
		}
		sc.logits = l.refs[lv]
		if v := s.g.Output("loss"); v != nil {
			r := l.refs[v]
			sc.loss = &r
		}
		if s.name == "train" && (sc.lr == nil || sc.labels == nil || sc.loss == nil) {
			return nil, fmt.Errorf("train: graph lacks an lr or labels input or a loss output")
		}
		e.arenaLen = max(e.arenaLen, int(s.p.ArenaBytes/4))
		for _, op := range s.g.Ops {
			f, w := opScratch(op)
			e.scratchLen, e.wideLen = max(e.scratchLen, f), max(e.wideLen, w)
		}
		e.steps = append(e.steps, sc)
	}
	return e, nil
}

// files writes every file of the package.
func (e *emitter) files() (map[string][]byte, error) {
	out := map[string][]byte{}
	render := func(name string, f *jen.File) error {
		var b bytes.Buffer
		if err := f.Render(&b); err != nil {
			return fmt.Errorf("BUG: codegen: rendering %s: %v", name, err)
		}
		out[name] = b.Bytes()
		return nil
	}
	for _, s := range e.steps {
		f := e.newFile()
		if err := e.emitStep(f, s); err != nil {
			return nil, err
		}
		if err := render(s.name+".go", f); err != nil {
			return nil, err
		}
		t := e.newFile()
		e.emitTables(t, s)
		if err := render(s.name+"_tables.go", t); err != nil {
			return nil, err
		}
	}
	// The steps chose the specialized kernels; their scratch sizes the
	// workers'.
	e.scratchLen = max(e.scratchLen, e.k.scratchLen)
	f := e.newFile()
	e.emitModel(f)
	if err := render("model.go", f); err != nil {
		return nil, err
	}
	out["drivers.go"] = e.k.driverFile(e.opts.Package)
	out["model_test.go"] = testFile(e.opts.Package)
	out["weightsio.go"] = weightsIOFile(e.opts.Package)
	out["network.go"] = networkFile(e.opts.Package)
	if e.opts.ImportPath != "" {
		out["trainer/main.go"] = trainerFile(e.arch.Name, e.opts.ImportPath)
	}
	kfiles, err := e.k.set.Render(e.opts.Package)
	if err != nil {
		return nil, err
	}
	for name, src := range kfiles {
		out[name] = src
	}
	ts, err := newTensorStructs(e.decls)
	if err != nil {
		return nil, err
	}
	t := e.newFile()
	e.emitTensorTable(t, ts)
	if err := render("tensors.go", t); err != nil {
		return nil, err
	}
	w := e.newFile()
	e.emitStructs(w, ts)
	if err := render("weights.go", w); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *emitter) newFile() *jen.File {
	f := jen.NewFile(e.opts.Package)
	f.HeaderComment(header)
	f.ImportName(nnPkg, "nn")
	return f
}

// stepOf returns the named step.
func (e *emitter) stepOf(name string) *stepCode {
	for _, s := range e.steps {
		if s.name == name {
			return s
		}
	}
	return nil
}

// emitModel writes the constants, the Model type, its constructor and
// the exported steps.
func (e *emitter) emitModel(f *jen.File) {
	a := e.arch
	tr, in := e.stepOf("train"), e.stepOf("infer")
	f.Comment(fmt.Sprintf("Package %s is the compiled network %q at batch %d: a model with its", e.opts.Package, e.arch.Name, e.opts.Batch))
	f.Comment("weights and state, one arena allocated once at the planned size, a training")
	f.Comment("step (forward, loss, backward, SGD update) and inference with BatchNorm folded.")
	f.Comment("Every shape, loop bound and offset is a constant of the code.")
	f.Line()
	f.Comment("The network's shapes.")
	f.Const().Defs(
		jen.Comment("Name is the network's name in the architecture it was compiled from."),
		jen.Id("Name").Op("=").Lit(a.Name),
		jen.Comment("Arch is the architecture, in the DSL."),
		jen.Id("Arch").Op("=").Lit(a.Format()),
		jen.Comment("Batch is the number of images of one step."),
		jen.Id("Batch").Op("=").Lit(e.opts.Batch),
		jen.Comment("Height, Width and Channels are the shape of one input image (NCHW)."),
		jen.Id("Height").Op("=").Lit(a.InputH),
		jen.Id("Width").Op("=").Lit(a.InputW),
		jen.Id("Channels").Op("=").Lit(a.InputC),
		jen.Comment("Classes is the number of outputs of the classifier."),
		jen.Id("Classes").Op("=").Lit(a.Classes),
		jen.Comment("ImageLen is the number of float32s of one image."),
		jen.Id("ImageLen").Op("=").Id("Height").Op("*").Id("Width").Op("*").Id("Channels"),
		jen.Comment("TrainFLOPs and InferFLOPs are the model FLOPs of a step on a batch: twice the"),
		jen.Comment("multiply-accumulates of the convolutions and the classifier, three times"),
		jen.Comment("over for training (forward, backward-data, backward-weights), as"),
		jen.Comment("frameworks count them; recomputation is not counted."),
		jen.Id("TrainFLOPs").Op("=").Lit(float64(6*e.macs*int64(e.opts.Batch))),
		jen.Id("InferFLOPs").Op("=").Lit(float64(2*e.macs*int64(e.opts.Batch))),
		jen.Comment("RecomputeFLOPs are the FLOPs a training step spends recomputing what the"),
		jen.Comment("memory budget did not let it store, counted as the plan counts them."),
		jen.Id("RecomputeFLOPs").Op("=").Lit(float64(e.recompute)),
		jen.Comment("Momentum and WeightDecay are the SGD hyperparameters compiled into TrainStep."),
		jen.Id("Momentum").Op("=").Lit(e.sgd.Momentum),
		jen.Id("WeightDecay").Op("=").Lit(e.sgd.Decay),
	)
	f.Line()
	f.Comment("Storage sizes, in float32s.")
	f.Const().Defs(
		jen.Id("arenaLen").Op("=").Lit(e.arenaLen).Comment(fmt.Sprintf("%s: train %d bytes, infer %d", byteString(int64(e.arenaLen)*4), tr.plan.ArenaBytes, in.plan.ArenaBytes)),
		jen.Id("paramsLen").Op("=").Lit(e.decls.paramsLen),
		jen.Id("stateLen").Op("=").Lit(e.decls.stateLen),
		jen.Id("scratchLen").Op("=").Lit(e.scratchLen).Comment("per worker"),
		jen.Id("wideLen").Op("=").Lit(e.wideLen).Comment("float64s per worker"),
		jen.Id("foldedLen").Op("=").Lit(e.foldedLen).Comment(fmt.Sprintf("%s: Infer's folded and packed weights", byteString(int64(e.foldedLen)*4))),
	)
	f.Line()
	f.Comment("Model is the network's weights and state and the memory its steps run in.")
	f.Comment("Its methods are not safe for concurrent use.")
	f.Comment("")
	f.Comment("Infer keeps the BatchNorm statistics folded into the weights, and the")
	f.Comment("weights packed for its kernels, from one call to the next. TrainStep,")
	f.Comment("Init and Load tell it to fold and pack again; a caller that writes the")
	f.Comment("Weights or Stats tensors itself must call WeightsChanged before Infer.")
	f.Type().Id("Model").Struct(
		jen.Id("Weights").Id("Weights").Comment("the trained tensors"),
		jen.Id("Momentum").Id("Weights").Comment("SGD's momentum of each weight"),
		jen.Id("Stats").Id("Stats").Comment("BatchNorm running statistics"),
		jen.Line(),
		jen.Id("params").Index().Float32().Comment("every param tensor (tensors lists them)"),
		jen.Id("state").Index().Float32().Comment("running statistics and momentum"),
		jen.Id("arena").Index().Float32().Comment("activations and gradients, at planned offsets"),
		jen.Id("folded").Index().Float32().Comment("Infer's folded and packed weights, allocated by its first call"),
		jen.Id("refold").Bool().Comment("the weights changed since folded was computed"),
		jen.Id("labels").Index().Int32(),
		jen.Id("logits").Index().Float32().Comment("the last step's logits"),
		jen.Id("ctx").Op("*").Qual(nnPkg, "Ctx"),
		jen.Id("step").Int64().Comment("training steps taken"),
		jen.Id("k").Id("kernelBuffers").Comment("the specialized kernels' buffers and tasks"),
	)
	f.Line()
	f.Comment("New returns a model whose steps run on threads goroutines, initialized from")
	f.Comment("seed (see Init). Results are bitwise the same for the same seed and thread")
	f.Comment("count. Close releases the goroutines.")
	f.Func().Id("New").Params(jen.Id("threads").Int(), jen.Id("seed").Uint64()).Params(jen.Op("*").Id("Model"), jen.Error()).Block(
		jen.List(jen.Id("ctx"), jen.Err()).Op(":=").Qual(nnPkg, "NewCtx").Call(jen.Id("threads"), jen.Id("scratchLen"), jen.Id("wideLen")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Id("m").Op(":=").Op("&").Id("Model").Values(jen.Dict{
			jen.Id("params"): jen.Make(jen.Index().Float32(), jen.Id("paramsLen")),
			jen.Id("state"):  jen.Make(jen.Index().Float32(), jen.Id("stateLen")),
			jen.Id("arena"):  jen.Make(jen.Index().Float32(), jen.Id("arenaLen")),
			jen.Id("labels"): jen.Make(jen.Index().Int32(), jen.Id("Batch")),
			jen.Id("logits"): jen.Make(jen.Index().Float32(), jen.Id("Batch").Op("*").Id("Classes")),
			jen.Id("ctx"):    jen.Id("ctx"),
			jen.Id("k"):      jen.Id("newKernelBuffers").Call(jen.Id("threads")),
			jen.Id("refold"): jen.True(),
		}),
		jen.For(jen.Id("i").Op(":=").Range().Id("tensors")).Block(
			jen.Id("t").Op(":=").Op("&").Id("tensors").Index(jen.Id("i")),
			jen.Switch(jen.Id("t").Dot("role")).Block(
				jen.Case(jen.Lit(roleWeight)).Block(jen.Op("*").Id("m").Dot("Weights").Dot("slot").Call(jen.Id("t").Dot("g"), jen.Id("t").Dot("u"), jen.Id("t").Dot("f")).Op("=").Id("m").Dot("storage").Call(jen.Id("t"))),
				jen.Case(jen.Lit(roleMomentum)).Block(jen.Op("*").Id("m").Dot("Momentum").Dot("slot").Call(jen.Id("t").Dot("g"), jen.Id("t").Dot("u"), jen.Id("t").Dot("f")).Op("=").Id("m").Dot("storage").Call(jen.Id("t"))),
				jen.Default().Block(jen.Op("*").Id("m").Dot("Stats").Dot("slot").Call(jen.Id("t").Dot("g"), jen.Id("t").Dot("u"), jen.Id("t").Dot("f")).Op("=").Id("m").Dot("storage").Call(jen.Id("t"))),
			),
		),
		jen.Id("m").Dot("Init").Call(jen.Id("seed")),
		jen.Return(jen.Id("m"), jen.Nil()),
	)
	f.Line()
	f.Comment("Close stops the model's worker goroutines; the model must not be used after.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("Close").Params().Block(jen.Id("m").Dot("ctx").Dot("Close").Call())
	f.Line()
	f.Comment("Init sets every tensor to its initial value for seed (He initialization for")
	f.Comment("convolutions, as the compiler's reference interpreter draws it) and the step")
	f.Comment("count to 0.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("Init").Params(jen.Id("seed").Uint64()).Block(
		jen.For(jen.List(jen.Id("_"), jen.Id("t")).Op(":=").Range().Id("tensors")).Block(
			jen.Qual(nnPkg, "Init").Call(jen.Id("m").Dot("storage").Call(jen.Op("&").Id("t")), jen.Id("t").Dot("name"), jen.Id("seed"), jen.Id("t").Dot("init"), jen.Id("t").Dot("a")),
		),
		jen.Id("m").Dot("step").Op("=").Lit(0),
		jen.Id("m").Dot("refold").Op("=").True(),
	)
	f.Line()
	f.Comment("WeightsChanged tells Infer that the Weights or Stats tensors were written")
	f.Comment("other than by TrainStep, Init or Load, so that it folds and packs them again.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("WeightsChanged").Params().Block(jen.Id("m").Dot("refold").Op("=").True())
	f.Line()
	f.Comment("Step is the number of training steps taken since Init.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("Step").Params().Int64().Block(jen.Return(jen.Id("m").Dot("step")))
	f.Line()
	f.Comment("SetStep sets the step count (dropout masks depend on it), for a resumed run.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("SetStep").Params(jen.Id("n").Int64()).Block(jen.Id("m").Dot("step").Op("=").Id("n"))
	f.Line()

	// TrainStep.
	f.Comment("TrainStep runs one training step on a batch: x holds Batch images of ImageLen")
	f.Comment("float32s each (NCHW), labels their classes. It updates the weights, momentum")
	f.Comment("and running statistics by SGD with learning rate lr and returns the mean loss.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("TrainStep").Params(jen.Id("x").Index().Float32(), jen.Id("labels").Index().Int32(), jen.Id("lr").Float32()).Params(jen.Float32(), jen.Error()).Block(
		jen.If(jen.Err().Op(":=").Id("checkBatch").Call(jen.Id("x"), jen.Id("labels")), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Lit(0), jen.Err())),
		jen.Copy(refExpr("m.arena", tr.x), jen.Id("x")),
		jen.Copy(jen.Id("m").Dot("labels"), jen.Id("labels")),
		jen.Id("m").Dot("arena").Index(jen.Lit(tr.lr.Off)).Op("=").Id("lr"),
		jen.Id("m").Dot("train").Call(),
		jen.Id("m").Dot("refold").Op("=").True(),
		jen.Copy(jen.Id("m").Dot("logits"), refExpr("m.arena", tr.logits)),
		jen.Id("m").Dot("step").Op("++"),
		jen.Return(jen.Id("m").Dot("arena").Index(jen.Lit(tr.loss.Off)), jen.Nil()),
	)
	f.Line()
	f.Comment("Infer returns the logits of a batch of Batch images (BatchNorm with the")
	f.Comment("running statistics, folded into the convolutions). The slice is the model's")
	f.Comment("and valid until its next step. The first call after the weights changed")
	f.Comment("folds and packs them (see Model); later calls reuse that work.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("Infer").Params(jen.Id("x").Index().Float32()).Params(jen.Index().Float32(), jen.Error()).Block(
		jen.If(jen.Err().Op(":=").Id("checkBatch").Call(jen.Id("x"), jen.Nil()), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.If(jen.Id("m").Dot("folded").Op("==").Nil()).Block(
			jen.Id("m").Dot("folded").Op("=").Id("AlignedFloats").Call(jen.Id("foldedLen")),
			jen.Id("m").Dot("refold").Op("=").True(),
		),
		jen.Copy(refExpr("m.arena", in.x), jen.Id("x")),
		jen.Id("m").Dot("infer").Call(),
		jen.Id("m").Dot("refold").Op("=").False(),
		jen.Copy(jen.Id("m").Dot("logits"), refExpr("m.arena", in.logits)),
		jen.Return(jen.Id("m").Dot("logits"), jen.Nil()),
	)
	f.Line()
	f.Comment("Logits are the logits of the last TrainStep or Infer, Batch rows of Classes.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("Logits").Params().Index().Float32().Block(jen.Return(jen.Id("m").Dot("logits")))
	f.Line()
	f.Comment("checkBatch checks the lengths of a batch and, when given, its labels.")
	f.Func().Id("checkBatch").Params(jen.Id("x").Index().Float32(), jen.Id("labels").Index().Int32()).Error().Block(
		jen.If(jen.Len(jen.Id("x")).Op("!=").Id("Batch").Op("*").Id("ImageLen")).Block(
			jen.Return(jen.Qual("fmt", "Errorf").Call(jen.Lit("%s: batch of %d float32s, want %d (%d images of %dx%dx%d)"),
				jen.Id("Name"), jen.Len(jen.Id("x")), jen.Id("Batch").Op("*").Id("ImageLen"), jen.Id("Batch"), jen.Id("Height"), jen.Id("Width"), jen.Id("Channels"))),
		),
		jen.If(jen.Id("labels").Op("==").Nil()).Block(jen.Return(jen.Nil())),
		jen.If(jen.Len(jen.Id("labels")).Op("!=").Id("Batch")).Block(
			jen.Return(jen.Qual("fmt", "Errorf").Call(jen.Lit("%s: %d labels, want %d"), jen.Id("Name"), jen.Len(jen.Id("labels")), jen.Id("Batch"))),
		),
		jen.For(jen.List(jen.Id("i"), jen.Id("c")).Op(":=").Range().Id("labels")).Block(
			jen.If(jen.Id("c").Op("<").Lit(0).Op("||").Id("c").Op(">=").Id("Classes")).Block(
				jen.Return(jen.Qual("fmt", "Errorf").Call(jen.Lit("%s: label %d of image %d is not a class in [0, %d)"), jen.Id("Name"), jen.Id("c"), jen.Id("i"), jen.Id("Classes"))),
			),
		),
		jen.Return(jen.Nil()),
	)
}

// refExpr is the slice expression of a ref in buffer buf ("m.arena").
func refExpr(buf string, r ref) jen.Code {
	parts := strings.Split(buf, ".")
	var s *jen.Statement = jen.Id(parts[0])
	for _, p := range parts[1:] {
		s = s.Dot(p)
	}
	return s.Index(jen.Lit(r.Off), jen.Lit(r.Off+r.Len))
}

// emitStep writes a step's driver (its schedule: block functions, in
// order, consecutive blocks of one function as a loop over its table)
// and the block functions.
func (e *emitter) emitStep(f *jen.File, s *stepCode) error {
	var body []jen.Code
	for i := 0; i < len(s.blocks); {
		period, reps := repeats(s.blocks[i:])
		first := s.blocks[i]
		if reps < 2 {
			body = append(body, jen.Id("m").Dot(first.fn.name).Call(jen.Op("&").Id(first.fn.name+"Rows").Index(jen.Lit(first.row))).Comment(first.group))
			i++
			continue
		}
		var calls []jen.Code
		for _, b := range s.blocks[i : i+period] {
			idx := jen.Id("i")
			switch d := b.row - first.row; {
			case d > 0:
				idx = jen.Id("i").Op("+").Lit(d)
			case d < 0:
				idx = jen.Id("i").Op("-").Lit(-d)
			}
			calls = append(calls, jen.Id("m").Dot(b.fn.name).Call(jen.Op("&").Id(b.fn.name+"Rows").Index(idx)))
		}
		last := s.blocks[i+period*reps-1]
		body = append(body, jen.Commentf("%s to %s", first.group, last.group),
			jen.For(jen.Id("i").Op(":=").Lit(first.row), jen.Id("i").Op("<").Lit(first.row+reps), jen.Id("i").Op("++")).Block(calls...))
		i += period * reps
	}
	// Updates not computed into their target's storage are copied at
	// the end of the step.
	for _, u := range s.g.Updates {
		src, dst := s.l.refs[u.Value], s.l.refs[u.Target]
		if src == dst {
			continue
		}
		body = append(body, jen.Copy(refExpr("m."+bufField(dst.Buf), dst), refExpr("m."+bufField(src.Buf), src)).Comment("update "+u.Target.Def.Name))
	}
	what := map[string]string{"train": "one training step", "infer": "inference"}[s.name]
	f.Comment(fmt.Sprintf("%s runs %s: the schedule of %q after the passes (%d ops in", s.name, what, s.g.Name, len(s.g.Ops)))
	f.Comment(fmt.Sprintf("%d blocks of %d functions), on the arena laid out by the memory plan.", len(s.blocks), len(s.fns)))
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id(s.name).Params().Block(body...)
	chains, units := bwdChains(s), fwdChains(s, e.k)
	for _, fn := range s.fns {
		f.Line()
		code, err := e.blockFunc(s.l, fn, chains[fn], units[fn])
		if err != nil {
			return err
		}
		f.Add(code)
	}
	return nil
}

// maxPeriod bounds the number of block calls one loop iteration makes.
const maxPeriod = 8

// repeats finds the loop that covers the most blocks from the start of
// bs: a period of p blocks repeated reps times, where repetition k calls
// the same functions as the first with every table row advanced by k.
// Backward passes interleave the units (a unit's gradient ops read the
// next unit's), so the period is often more than one block.
func repeats(bs []*block) (period, reps int) {
	period, reps = 1, 1
	for p := 1; p <= maxPeriod && 2*p <= len(bs); p++ {
		// Rows of one function must advance by one per repetition, so a
		// function appears once per period at most.
		seen := map[*blockFn]bool{}
		ok := true
		for _, b := range bs[:p] {
			if seen[b.fn] {
				ok = false
				break
			}
			seen[b.fn] = true
		}
		if !ok {
			continue
		}
		r := 1
		for ; (r+1)*p <= len(bs); r++ {
			match := true
			for j := 0; j < p; j++ {
				b, b0 := bs[r*p+j], bs[j]
				if b.fn != b0.fn || b.row != b0.row+r {
					match = false
					break
				}
			}
			if !match {
				break
			}
		}
		if r >= 2 && p*r > period*reps {
			period, reps = p, r
		}
	}
	return period, reps
}

// bufField is the Model field of a buffer kind.
func bufField(b bufKind) string {
	return [...]string{inArena: "arena", inParams: "params", inState: "state", inLabels: "labels", inFolded: "folded"}[b]
}

// blockFunc writes one block function: each op of its first block, its
// storage taken from the row t of its table; the chains that start at an
// op index run as one call.
func (e *emitter) blockFunc(l *layout, fn *blockFn, chains map[int]bwdChain, units map[int]fwdChain) (jen.Code, error) {
	b := fn.proto
	used := map[bufKind]bool{}
	for _, c := range b.cols {
		used[c.Buf] = true
	}
	var body []jen.Code
	var names, fields []jen.Code
	for _, k := range []bufKind{inArena, inParams, inState, inLabels, inFolded} {
		if used[k] {
			names = append(names, jen.Id(bufName[k]))
			fields = append(fields, jen.Id("m").Dot(bufField(k)))
		}
	}
	body = append(body, jen.List(names...).Op(":=").List(fields...))
	col := func(k int) jen.Code {
		c := b.cols[k]
		return jen.Id(bufName[c.Buf]).Index(jen.Id("t").Index(jen.Lit(k)), jen.Id("t").Index(jen.Lit(k)).Op("+").Lit(c.Len))
	}
	call := func(op *ir.Op) *OpCall {
		c := &OpCall{Op: op, Ctx: jen.Id("m").Dot("ctx"), Step: jen.Id("m").Dot("step")}
		for _, a := range op.Args {
			c.Args = append(c.Args, col(b.col[a]))
		}
		for _, r := range op.Results {
			c.Results = append(c.Results, col(b.col[r]))
		}
		if p := l.packedOf(op); p != nil {
			c.Packed = col(b.col[p])
		}
		return c
	}
	// Hoisted ops run only when the weights changed; consecutive ones
	// share a test of the flag.
	var refold []jen.Code
	flush := func() {
		if len(refold) > 0 {
			body = append(body, jen.If(jen.Id("m").Dot("refold")).Block(refold...))
			refold = nil
		}
	}
	for i := 0; i < len(b.ops); i++ {
		op := b.ops[i]
		c := call(op)
		if u, ok := units[i]; ok {
			if code := e.k.specialFwd(u, func(j int) *OpCall { return call(b.ops[j]) }); code != nil {
				// The hoisted ops between the convolutions run first.
				for j := i + 1; j < u.last(); j++ {
					if hop := b.ops[j]; l.hoisted[hop] {
						hc, err := e.opCode(call(hop))
						if err != nil {
							return nil, err
						}
						refold = append(refold, jen.Comment(localName(hop, b.group)+": "+string(hop.Kind)), hc)
					}
				}
				flush()
				var names []string
				for _, j := range u.idx() {
					names = append(names, localName(b.ops[j], b.group))
				}
				body = append(body, jen.Comment(strings.Join(names, ", ")+": a unit's convolutions, image by image"), code)
				i = u.last()
				continue
			}
		}
		if ch, ok := chains[i]; ok {
			if code := e.k.specialBwd(ch, func(j int) *OpCall { return call(b.ops[j]) }); code != nil {
				var names, kinds []string
				for _, op := range ch.ops(b.ops) {
					names = append(names, localName(op, b.group))
					kinds = append(kinds, string(op.Kind))
				}
				flush()
				body = append(body, jen.Comment(strings.Join(names, ", ")+": "+strings.Join(kinds, ", ")), code)
				i += ch.len() - 1
				continue
			}
		}
		code, err := e.opCode(c)
		if err != nil {
			return nil, err
		}
		if l.hoisted[op] {
			refold = append(refold, jen.Comment(localName(op, b.group)+": "+string(op.Kind)), code)
			continue
		}
		flush()
		body = append(body, jen.Comment(localName(op, b.group)+": "+string(op.Kind)), code)
	}
	flush()
	groups := b.group
	if len(fn.rows) > 1 {
		groups = fmt.Sprintf("%d blocks like %s", len(fn.rows), b.group)
	}
	s := jen.Commentf("%s runs the %s ops of %s; t is a row of %sRows.", fn.name, strings.ToLower(b.phase), groups, fn.name).Line()
	s.Func().Params(jen.Id("m").Op("*").Id("Model")).Id(fn.name).Params(jen.Id("t").Op("*").Index(jen.Lit(len(b.cols))).Int()).Block(body...)
	return s, nil
}

// opCode is the call of c's specialized kernel, or of its runtime
// function.
func (e *emitter) opCode(c *OpCall) (jen.Code, error) {
	if code := e.k.special(c); code != nil {
		return code, nil
	}
	return emitOp(c)
}

// emitTables writes each block function's table: a row per block, a
// column per storage reference.
func (e *emitter) emitTables(f *jen.File, s *stepCode) {
	for _, fn := range s.fns {
		var rows []jen.Code
		for _, r := range fn.rows {
			var vals []jen.Code
			for _, v := range r {
				vals = append(vals, jen.Lit(v))
			}
			rows = append(rows, jen.Values(vals...))
		}
		f.Var().Id(fn.name + "Rows").Op("=").Index(jen.Op("...")).Index(jen.Lit(len(fn.proto.cols))).Int().Values(rows...)
	}
}

// emitTensorTable writes the table of every param and state tensor and
// the accessors built on it.
func (e *emitter) emitTensorTable(f *jen.File, ts *tensorStructs) {
	f.Comment("tensor is one param or state tensor: its name (the weights files use it),")
	f.Comment("shape, storage and initialization.")
	f.Type().Id("tensor").Struct(
		jen.Id("name").String(),
		jen.Id("shape").Index().Int(),
		jen.Id("param").Bool().Comment("in params; else in state"),
		jen.List(jen.Id("off"), jen.Id("n")).Int(),
		jen.Id("init").Qual(nnPkg, "InitKind"),
		jen.Id("a").Float64(),
		jen.Id("role").Int().Comment("0 weight, 1 momentum, 2 statistic"),
		jen.List(jen.Id("g"), jen.Id("u"), jen.Id("f")).Int().Comment("group, unit and field in Weights or Stats"),
	)
	f.Line()
	kinds := map[string]string{"zeros": "InitZeros", "ones": "InitOnes", "const": "InitConst", "normal": "InitNormal", "uniform": "InitUniform"}
	var rows []jen.Code
	for _, t := range e.decls.tensors {
		var shape []jen.Code
		for _, d := range t.Shape {
			shape = append(shape, jen.Lit(d))
		}
		at := ts.at[t]
		rows = append(rows, jen.Values(jen.Lit(t.Name), jen.Index().Int().Values(shape...), jen.Lit(t.Kind == ir.Param), jen.Lit(t.Off), jen.Lit(t.Len), jen.Qual(nnPkg, kinds[t.Init]), jen.Lit(t.A),
			jen.Lit(at.role), jen.Lit(at.g), jen.Lit(at.u), jen.Lit(at.f)))
	}
	f.Comment("tensors lists every param and state tensor, in declaration order.")
	f.Var().Id("tensors").Op("=").Index(jen.Op("...")).Id("tensor").Values(rows...)
	f.Line()
	f.Comment("storage is the memory of a tensor.")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("storage").Params(jen.Id("t").Op("*").Id("tensor")).Index().Float32().Block(
		jen.If(jen.Id("t").Dot("param")).Block(jen.Return(jen.Id("m").Dot("params").Index(jen.Id("t").Dot("off"), jen.Id("t").Dot("off").Op("+").Id("t").Dot("n")))),
		jen.Return(jen.Id("m").Dot("state").Index(jen.Id("t").Dot("off"), jen.Id("t").Dot("off").Op("+").Id("t").Dot("n"))),
	)
	f.Line()
	f.Comment("Tensor returns the memory of the param or state tensor called name")
	f.Comment("(\"s1.u1.conv1.weight\", \"s1.u1.bn1.mean\"), nil if there is none. Weights are")
	f.Comment("stored as the architecture declares them: conv weights [out][in][kh][kw].")
	f.Func().Params(jen.Id("m").Op("*").Id("Model")).Id("Tensor").Params(jen.Id("name").String()).Index().Float32().Block(
		jen.For(jen.Id("i").Op(":=").Range().Id("tensors")).Block(
			jen.If(jen.Id("tensors").Index(jen.Id("i")).Dot("name").Op("==").Id("name")).Block(
				jen.Return(jen.Id("m").Dot("storage").Call(jen.Op("&").Id("tensors").Index(jen.Id("i")))),
			),
		),
		jen.Return(jen.Nil()),
	)
	f.Line()
	f.Comment("TensorNames lists every param and state tensor, in declaration order.")
	f.Func().Id("TensorNames").Params().Index().String().Block(
		jen.Id("names").Op(":=").Make(jen.Index().String(), jen.Lit(0), jen.Len(jen.Id("tensors"))),
		jen.For(jen.List(jen.Id("_"), jen.Id("t")).Op(":=").Range().Id("tensors")).Block(
			jen.Id("names").Op("=").Append(jen.Id("names"), jen.Id("t").Dot("name")),
		),
		jen.Return(jen.Id("names")),
	)
}

// byteString formats a byte count in binary units.
func byteString(n int64) string { return passes.SizeString(n) }
