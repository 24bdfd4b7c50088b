package ir

import (
	"fmt"
	"slices"
	"strings"
)

// OpKind names an operation. The op table (Info) gives each kind its
// arity, attributes and shape inference.
type OpKind string

// Declarations: ops with no arguments that introduce a tensor.
const (
	Input OpKind = "input" // fed by the caller every step (images, labels, learning rate)
	Param OpKind = "param" // trainable weight, saved with the model
	State OpKind = "state" // persistent non-trainable tensor (running statistics, momentum)
)

// Forward ops.
const (
	Conv2D       OpKind = "conv2d"        // (x, w[, b]) {stride, pad}: cross-correlation, groups=1
	BNStats      OpKind = "bnstats"       // (x) -> (mean, var): per-channel batch statistics, biased variance
	BNNorm       OpKind = "bnnorm"        // (x, mean, var, gamma, beta) {eps}: gamma*(x-mean)/sqrt(var+eps)+beta
	EMA          OpKind = "ema"           // (run, stat) {momentum, scale}: (1-momentum)*run + momentum*scale*stat
	ReLU         OpKind = "relu"          // (x): max(x, 0)
	Sigmoid      OpKind = "sigmoid"       // (x): 1/(1+exp(-x))
	Add          OpKind = "add"           // (a, b): a+b, same type
	Mul          OpKind = "mul"           // (a, b): a*b elementwise, same type
	Scale        OpKind = "scale"         // (x) {factor, offset}: factor*x + offset
	Dropout      OpKind = "dropout"       // (x) {rate, seed} -> (y, mask): y = x*mask, mask in {0, 1/(1-rate)}
	SubsamplePad OpKind = "subsample_pad" // (x) {stride, channels}: x[:, :, ::stride, ::stride] zero-padded to channels (option A)
	MaxPool      OpKind = "maxpool"       // (x) {kernel, stride, pad}: padding never wins
	GAP          OpKind = "gap"           // (x [N,C,H,W]) -> [N,C]: global average pooling
	Linear       OpKind = "linear"        // (x [N,C], w [K,C], b [K]) -> [N,K]
	SoftmaxCE    OpKind = "softmaxce"     // (logits [N,K], labels i32[N]) -> f32[]: mean cross-entropy
)

// Gradient ops and the optimizer.
const (
	Conv2DDx         OpKind = "conv2d_dx"          // (dy, w) {stride, pad, in_h, in_w} -> dx
	Conv2DDw         OpKind = "conv2d_dw"          // (dy, x) {stride, pad, kernel} -> dw
	ChanSum          OpKind = "chansum"            // (x) -> [C]: sum over all axes but the channel (bias gradient)
	BNNormGrad       OpKind = "bnnorm_grad"        // (dy, x, mean, var, gamma) {eps} -> (dx, dmean, dvar, dgamma, dbeta)
	BNStatsGrad      OpKind = "bnstats_grad"       // (dmean, dvar, x, mean, [acc]) -> dx: acc + the gradient through the statistics
	ReLUGrad         OpKind = "relu_grad"          // (dy, y) -> dy where y > 0
	SigmoidGrad      OpKind = "sigmoid_grad"       // (dy, y) -> dy*y*(1-y)
	SubsamplePadGrad OpKind = "subsample_pad_grad" // (dy) {stride, channels, in_h, in_w} -> dx
	MaxPoolGrad      OpKind = "maxpool_grad"       // (dy, x) {kernel, stride, pad} -> dx
	GAPGrad          OpKind = "gap_grad"           // (dy [N,C]) {in_h, in_w} -> dx
	LinearDx         OpKind = "linear_dx"          // (dy [N,K], w [K,C]) -> dx [N,C]
	LinearDw         OpKind = "linear_dw"          // (dy [N,K], x [N,C]) -> dw [K,C]
	SoftmaxCEGrad    OpKind = "softmaxce_grad"     // (logits, labels) {scale} -> scale*(softmax(logits)-onehot(labels))/N
	SGD              OpKind = "sgd"                // (w, g, mom, lr) {momentum, decay} -> (w', mom')
)

// Fused and layout ops, introduced by the passes (BN folding, BN-ReLU-conv
// fusion, layout). Optional arguments of conv2d_fused are present exactly
// when the attribute that names them says so, in this order:
// x, w, [b if bias], [scale, shift if prologue=affine_relu], [r if residual].
const (
	// Conv2DFused (x, w, [b], [scale, shift], [r]) {stride, pad, prologue, bias, residual, relu, stats}
	// -> y [, sum, sumsq]: a = prologue(x) (none: x; relu: max(x,0);
	// affine_relu: max(scale[c]*x+shift[c], 0)); z = conv(a, w) + b + r;
	// y = relu ? max(z,0) : z; with stats, sum[c] and sumsq[c] are the
	// per-channel sums of y and y*y (the next BatchNorm's statistics).
	Conv2DFused OpKind = "conv2d_fused"
	// BNFold (w, [b], mean, var, gamma, beta) {eps} -> (w', b'): a conv
	// followed by inference BatchNorm as one conv. s = gamma/sqrt(var+eps);
	// w'[o] = w[o]*s[o]; b' = (b-mean)*s + beta (b = 0 when absent).
	BNFold OpKind = "bnfold"
	// BNAffine (mean, var, gamma, beta) {eps} -> (scale, shift): BatchNorm as a
	// per-channel affine map: scale = gamma/sqrt(var+eps), shift = beta - mean*scale.
	BNAffine OpKind = "bnaffine"
	// Moments (sum, sumsq) {count} -> (mean, var): batch statistics from the
	// sums a conv epilogue accumulated; var is biased: sumsq/count - mean^2.
	Moments OpKind = "moments"
	// AffineReLU (x, scale, shift) -> max(scale[c]*x + shift[c], 0): a
	// BatchNorm-ReLU pair materialized once for several readers.
	AffineReLU OpKind = "affine_relu"
	// Relayout (x) {layout} -> the same tensor stored in another layout.
	Relayout OpKind = "relayout"

	// Conv2DDwFused (dy, x, [scale, shift]) {stride, pad, kernel, prologue}
	// -> dw: the weight gradient of conv2d_fused, recomputing prologue(x)
	// on the fly instead of reading a stored activation.
	Conv2DDwFused OpKind = "conv2d_dw_fused"
	// AffineReLUGrad (da, x, scale, shift, [acc]) -> (dx, dscale, dshift),
	// with m = scale*x+shift > 0: dx = da*m*scale (plus acc when given: the
	// gradient x already has), dscale = Σ da*m*x, dshift = Σ da*m.
	AffineReLUGrad OpKind = "affine_relu_grad"
	// BNAffineGrad (dscale, dshift, mean, var, gamma) {eps} -> (dmean, dvar, dgamma, dbeta).
	BNAffineGrad OpKind = "bnaffine_grad"
	// MomentsGrad (dmean, dvar, mean) {count} -> (dsum, dsumsq):
	// dsum = dmean/count - 2*mean*dvar/count, dsumsq = dvar/count.
	MomentsGrad OpKind = "moments_grad"
	// StatsGrad (dsum, dsumsq, y) -> dsum[c] + 2*y*dsumsq[c]: the gradient
	// a stats epilogue sends back into the tensor it summed.
	StatsGrad OpKind = "stats_grad"
)

// IsDecl reports whether k declares a tensor (input, param or state).
func (k OpKind) IsDecl() bool { return k == Input || k == Param || k == State }

// trainingOnly are the kinds an inference graph must not contain: they
// compute batch statistics, random masks, gradients or weight updates.
var trainingOnly = map[OpKind]bool{
	BNStats: true, EMA: true, Dropout: true, SGD: true,
	Conv2DDx: true, Conv2DDw: true, LinearDx: true, LinearDw: true,
	ChanSum: true, SoftmaxCEGrad: true, Moments: true, Conv2DDwFused: true,
}

// TrainingOnly reports whether an op of kind k belongs only in a training
// graph: batch statistics and their averages, dropout, gradients and the
// optimizer.
func (k OpKind) TrainingOnly() bool {
	return trainingOnly[k] || strings.HasSuffix(string(k), "_grad")
}

// OpInfo describes an op kind.
type OpInfo struct {
	Kind    OpKind
	MinArgs int
	MaxArgs int
	Attrs   []AttrSpec
	// Infer returns the result types given an op whose arguments have the
	// right count and whose attributes have the right types.
	Infer func(op *Op) ([]Type, error)
	// LayoutFree ops choose the layout of their results (the layout pass
	// sets it): Infer returns the default layout and Verify compares only
	// dtype and shape. Every other op's result layout is inferred from its
	// arguments, and elementwise ops require their arguments to agree.
	LayoutFree bool
}

var opTable = map[OpKind]*OpInfo{}

// Info returns the table entry for k, or nil for an unknown kind.
func Info(k OpKind) *OpInfo { return opTable[k] }

// Kinds returns every known op kind, sorted.
func Kinds() []OpKind {
	var ks []OpKind
	for k := range opTable {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func def(k OpKind, minArgs, maxArgs int, infer func(op *Op) ([]Type, error), attrs ...AttrSpec) {
	opTable[k] = &OpInfo{Kind: k, MinArgs: minArgs, MaxArgs: maxArgs, Attrs: attrs, Infer: infer}
}

func req(name string, t AttrType) AttrSpec { return AttrSpec{Name: name, Type: t} }
func opt(name string, t AttrType, d any) AttrSpec {
	return AttrSpec{Name: name, Type: t, Default: d}
}

var (
	strideAttr = opt("stride", AttrInt, 1)
	padAttr    = opt("pad", AttrInt, 0)
	epsAttr    = opt("eps", AttrFloat, 1e-5)
	initAttrs  = []AttrSpec{
		opt("init", AttrString, "zeros"), // zeros, ones, const, normal, uniform
		opt("value", AttrFloat, 0.0),     // for init=const
		opt("std", AttrFloat, 0.0),       // for init=normal (mean 0)
		opt("bound", AttrFloat, 0.0),     // for init=uniform on [-bound, bound]
	}
)

func init() {
	def(Input, 0, 0, inferDecl)
	def(Param, 0, 0, inferDecl, initAttrs...)
	def(State, 0, 0, inferDecl, initAttrs...)

	def(Conv2D, 2, 3, inferConv2D, strideAttr, padAttr)
	def(BNStats, 1, 1, inferBNStats)
	def(BNNorm, 5, 5, inferBNNorm, epsAttr)
	def(EMA, 2, 2, inferEMA, opt("momentum", AttrFloat, 0.1), opt("scale", AttrFloat, 1.0))
	def(ReLU, 1, 1, inferUnary)
	def(Sigmoid, 1, 1, inferUnary)
	def(Add, 2, 2, inferBinary)
	def(Mul, 2, 2, inferBinary)
	def(Scale, 1, 1, inferUnary, req("factor", AttrFloat), opt("offset", AttrFloat, 0.0))
	def(Dropout, 1, 1, inferDropout, req("rate", AttrFloat), opt("seed", AttrInt, 0))
	def(SubsamplePad, 1, 1, inferSubsamplePad, opt("stride", AttrInt, 2), req("channels", AttrInt))
	def(MaxPool, 1, 1, inferMaxPool, req("kernel", AttrInt), strideAttr, padAttr)
	def(GAP, 1, 1, inferGAP)
	def(Linear, 3, 3, inferLinear)
	def(SoftmaxCE, 2, 2, inferSoftmaxCE)

	def(Conv2DDx, 2, 2, inferConv2DDx, strideAttr, padAttr, req("in_h", AttrInt), req("in_w", AttrInt))
	def(Conv2DDw, 2, 2, inferConv2DDw, strideAttr, padAttr, req("kernel", AttrInt))
	def(ChanSum, 1, 1, inferChanSum)
	def(BNNormGrad, 5, 5, inferBNNormGrad, epsAttr)
	def(BNStatsGrad, 4, 5, inferBNStatsGrad)
	def(ReLUGrad, 2, 2, inferBinary)
	def(SigmoidGrad, 2, 2, inferBinary)
	def(SubsamplePadGrad, 1, 1, inferSubsamplePadGrad, opt("stride", AttrInt, 2), req("channels", AttrInt),
		req("in_h", AttrInt), req("in_w", AttrInt))
	def(MaxPoolGrad, 2, 2, inferMaxPoolGrad, req("kernel", AttrInt), strideAttr, padAttr)
	def(GAPGrad, 1, 1, inferGAPGrad, req("in_h", AttrInt), req("in_w", AttrInt))
	def(LinearDx, 2, 2, inferLinearDx)
	def(LinearDw, 2, 2, inferLinearDw)
	def(SoftmaxCEGrad, 2, 2, inferSoftmaxCEGrad, opt("scale", AttrFloat, 1.0))
	def(SGD, 4, 4, inferSGD, opt("momentum", AttrFloat, 0.9), opt("decay", AttrFloat, 1e-4))

	def(Conv2DFused, 2, 6, inferConv2DFused, strideAttr, padAttr, opt("prologue", AttrString, "none"),
		opt("bias", AttrBool, false), opt("residual", AttrBool, false), opt("relu", AttrBool, false),
		opt("stats", AttrBool, false))
	def(BNFold, 5, 6, inferBNFold, epsAttr)
	def(BNAffine, 4, 4, inferBNAffine, epsAttr)
	def(Moments, 2, 2, inferMoments, req("count", AttrInt))
	def(AffineReLU, 3, 3, inferAffineReLU)
	def(Relayout, 1, 1, inferRelayout, req("layout", AttrString))
	def(Conv2DDwFused, 2, 4, inferConv2DDwFused, strideAttr, padAttr, req("kernel", AttrInt),
		opt("prologue", AttrString, "none"))
	def(AffineReLUGrad, 4, 5, inferAffineReLUGrad)
	def(BNAffineGrad, 5, 5, inferBNAffineGrad, epsAttr)
	def(MomentsGrad, 3, 3, inferMomentsGrad, req("count", AttrInt))
	def(StatsGrad, 3, 3, inferStatsGrad)

	for _, k := range []OpKind{Conv2D, Conv2DFused, Conv2DDx, SubsamplePad, SubsamplePadGrad, MaxPool, MaxPoolGrad, GAPGrad} {
		opTable[k].LayoutFree = true
	}
}

// InferTypes checks op's arity and attributes against the op table and
// returns the types of its results. Errors name the op.
func InferTypes(op *Op) ([]Type, error) {
	info := Info(op.Kind)
	if info == nil {
		return nil, fmt.Errorf("%s: unknown op kind", op)
	}
	if n := len(op.Args); n < info.MinArgs || n > info.MaxArgs {
		want := fmt.Sprint(info.MinArgs)
		if info.MaxArgs != info.MinArgs {
			want = fmt.Sprintf("%d or %d", info.MinArgs, info.MaxArgs)
		}
		return nil, fmt.Errorf("%s: has %d arguments, want %s", op, n, want)
	}
	for i, a := range op.Args {
		if a == nil {
			return nil, fmt.Errorf("%s: argument %d is nil", op, i)
		}
	}
	for _, k := range op.Attrs.Keys() {
		spec := attrSpec(info, k)
		if spec == nil {
			return nil, fmt.Errorf("%s: unknown attribute %q", op, k)
		}
		got := attrTypeOf(op.Attrs[k])
		if got != spec.Type && !(spec.Type == AttrFloat && got == AttrInt) {
			return nil, fmt.Errorf("%s: attribute %s is a %v, want %v", op, k, got, spec.Type)
		}
	}
	for _, s := range info.Attrs {
		if _, ok := op.Attrs[s.Name]; !ok && s.Default == nil {
			return nil, fmt.Errorf("%s: missing attribute %s", op, s.Name)
		}
	}
	types, err := info.Infer(op)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return types, nil
}

// expectedType returns the type a result of op must have when the op
// table infers t and the result is declared as got: t itself, except that
// a layout-free op's rank-4 result keeps the layout a pass chose for it.
func expectedType(op *Op, t, got Type) Type {
	if info := Info(op.Kind); info != nil && info.LayoutFree && len(got.Shape) == 4 {
		t.Layout = got.Layout
	}
	return t
}

func attrSpec(info *OpInfo, name string) *AttrSpec {
	for i := range info.Attrs {
		if info.Attrs[i].Name == name {
			return &info.Attrs[i]
		}
	}
	return nil
}

// Shape checks. Each returns an error describing the argument by position.

func argF32(op *Op, i int, ranks ...int) (Type, error) {
	t := op.Args[i].Type
	if t.DType != F32 {
		return t, fmt.Errorf("argument %d is %v, want f32", i, t)
	}
	if len(ranks) > 0 && !slices.Contains(ranks, len(t.Shape)) {
		return t, fmt.Errorf("argument %d is %v, want rank %v", i, t, rankList(ranks))
	}
	return t, nil
}

func rankList(ranks []int) string {
	if len(ranks) == 1 {
		return fmt.Sprint(ranks[0])
	}
	return fmt.Sprint(ranks[0], " or ", ranks[1])
}

// argsF32 checks that every argument is f32 with the given rank.
func argsF32(op *Op, rank int) error {
	for i := range op.Args {
		if _, err := argF32(op, i, rank); err != nil {
			return err
		}
	}
	return nil
}

func vecOf(op *Op, i, c int) error {
	t, err := argF32(op, i, 1)
	if err != nil {
		return err
	}
	if t.Shape[0] != c {
		return fmt.Errorf("argument %d is %v, want f32[%d]", i, t, c)
	}
	return nil
}

func sameType(op *Op, i, j int) error {
	a, b := op.Args[i].Type, op.Args[j].Type
	if !a.Equal(b) {
		return fmt.Errorf("argument %d is %v but argument %d is %v; they must match", i, a, j, b)
	}
	return nil
}

func positive(op *Op, names ...string) error {
	for _, n := range names {
		if v := op.Int(n); v < 1 {
			return fmt.Errorf("attribute %s=%d, want >= 1", n, v)
		}
	}
	return nil
}

func nonNegative(op *Op, names ...string) error {
	for _, n := range names {
		if v := op.Int(n); v < 0 {
			return fmt.Errorf("attribute %s=%d, want >= 0", n, v)
		}
	}
	return nil
}

// convOut is the output size of a window of k with stride s and padding p
// over n positions, or an error when no window fits.
func convOut(n, k, s, p int) (int, error) {
	if n+2*p < k {
		return 0, fmt.Errorf("window %d does not fit input %d with padding %d", k, n, p)
	}
	return (n+2*p-k)/s + 1, nil
}

func one(t Type) []Type { return []Type{t} }

func inferDecl(op *Op) ([]Type, error) {
	if len(op.Results) != 1 {
		return nil, fmt.Errorf("declares %d values, want 1", len(op.Results))
	}
	t := op.Results[0].Type
	if t.DType != F32 && t.DType != I32 {
		return nil, fmt.Errorf("declared type %v has no valid dtype", t)
	}
	for _, d := range t.Shape {
		if d < 1 {
			return nil, fmt.Errorf("declared type %v has a dimension < 1", t)
		}
	}
	if op.Kind != Input && t.DType != F32 {
		return nil, fmt.Errorf("%s must be f32, is %v", op.Kind, t)
	}
	if op.Kind == Input {
		return one(t), nil
	}
	switch init := op.Str("init"); init {
	case "zeros", "ones", "const", "normal", "uniform":
	default:
		return nil, fmt.Errorf("unknown init %q (want zeros, ones, const, normal or uniform)", init)
	}
	return one(t), nil
}

// convTypes checks the input and weight of a conv2d or conv2d_fused (args
// 0 and 1), its stride and pad, and returns them with the output type.
func convTypes(op *Op) (x, w, y Type, err error) {
	if x, err = argF32(op, 0, 4); err != nil {
		return
	}
	if w, err = argF32(op, 1, 4); err != nil {
		return
	}
	if err = positive(op, "stride"); err != nil {
		return
	}
	if err = nonNegative(op, "pad"); err != nil {
		return
	}
	if x.Shape[1] != w.Shape[1] {
		err = fmt.Errorf("input %v has %d channels but weight %v expects %d", x, x.Shape[1], w, w.Shape[1])
		return
	}
	s, p := op.Int("stride"), op.Int("pad")
	ho, err := convOut(x.Shape[2], w.Shape[2], s, p)
	if err != nil {
		return
	}
	wo, err := convOut(x.Shape[3], w.Shape[3], s, p)
	if err != nil {
		return
	}
	return x, w, T32(x.Shape[0], w.Shape[0], ho, wo), nil
}

func inferConv2D(op *Op) ([]Type, error) {
	_, w, y, err := convTypes(op)
	if err != nil {
		return nil, err
	}
	if len(op.Args) == 3 {
		if err := vecOf(op, 2, w.Shape[0]); err != nil {
			return nil, err
		}
	}
	return one(y), nil
}

func inferBNStats(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 2, 4)
	if err != nil {
		return nil, err
	}
	c := T32(x.Shape[1])
	return []Type{c, c}, nil
}

func inferBNNorm(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 2, 4)
	if err != nil {
		return nil, err
	}
	for i := 1; i < 5; i++ {
		if err := vecOf(op, i, x.Shape[1]); err != nil {
			return nil, err
		}
	}
	return one(x), nil
}

func inferEMA(op *Op) ([]Type, error) {
	if err := argsF32(op, 1); err != nil {
		return nil, err
	}
	if err := sameType(op, 0, 1); err != nil {
		return nil, err
	}
	return one(op.Args[0].Type), nil
}

func inferUnary(op *Op) ([]Type, error) {
	x, err := argF32(op, 0)
	if err != nil {
		return nil, err
	}
	return one(x), nil
}

func inferBinary(op *Op) ([]Type, error) {
	if _, err := argF32(op, 0); err != nil {
		return nil, err
	}
	if err := sameType(op, 0, 1); err != nil {
		return nil, err
	}
	return one(op.Args[0].Type), nil
}

func inferDropout(op *Op) ([]Type, error) {
	x, err := argF32(op, 0)
	if err != nil {
		return nil, err
	}
	if r := op.Float("rate"); !(r >= 0 && r < 1) {
		return nil, fmt.Errorf("rate=%v, want 0 <= rate < 1", r)
	}
	return []Type{x, x}, nil
}

func inferSubsamplePad(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 4)
	if err != nil {
		return nil, err
	}
	if err := positive(op, "stride"); err != nil {
		return nil, err
	}
	s, c := op.Int("stride"), op.Int("channels")
	if c < x.Shape[1] {
		return nil, fmt.Errorf("channels=%d is fewer than the input's %d", c, x.Shape[1])
	}
	sh := Shape{x.Shape[0], c, (x.Shape[2]-1)/s + 1, (x.Shape[3]-1)/s + 1}
	return one(T32(sh...)), nil
}

func inferMaxPool(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 4)
	if err != nil {
		return nil, err
	}
	if err := positive(op, "kernel", "stride"); err != nil {
		return nil, err
	}
	if err := nonNegative(op, "pad"); err != nil {
		return nil, err
	}
	k, s, p := op.Int("kernel"), op.Int("stride"), op.Int("pad")
	if p >= k {
		return nil, fmt.Errorf("pad=%d must be smaller than kernel=%d", p, k)
	}
	ho, err := convOut(x.Shape[2], k, s, p)
	if err != nil {
		return nil, err
	}
	wo, err := convOut(x.Shape[3], k, s, p)
	if err != nil {
		return nil, err
	}
	return one(T32(x.Shape[0], x.Shape[1], ho, wo)), nil
}

func inferGAP(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 4)
	if err != nil {
		return nil, err
	}
	return one(T32(x.Shape[0], x.Shape[1])), nil
}

func inferLinear(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 2)
	if err != nil {
		return nil, err
	}
	w, err := argF32(op, 1, 2)
	if err != nil {
		return nil, err
	}
	if w.Shape[1] != x.Shape[1] {
		return nil, fmt.Errorf("input %v has %d features but weight %v expects %d", x, x.Shape[1], w, w.Shape[1])
	}
	if err := vecOf(op, 2, w.Shape[0]); err != nil {
		return nil, err
	}
	return one(T32(x.Shape[0], w.Shape[0])), nil
}

func checkLabels(op *Op, logits, labels int) error {
	l, err := argF32(op, logits, 2)
	if err != nil {
		return err
	}
	y := op.Args[labels].Type
	if y.DType != I32 || len(y.Shape) != 1 || y.Shape[0] != l.Shape[0] {
		return fmt.Errorf("labels are %v, want i32[%d]", y, l.Shape[0])
	}
	return nil
}

func inferSoftmaxCE(op *Op) ([]Type, error) {
	if err := checkLabels(op, 0, 1); err != nil {
		return nil, err
	}
	return one(T32()), nil
}

func inferConv2DDx(op *Op) ([]Type, error) {
	if err := argsF32(op, 4); err != nil {
		return nil, err
	}
	if err := positive(op, "stride", "in_h", "in_w"); err != nil {
		return nil, err
	}
	if err := nonNegative(op, "pad"); err != nil {
		return nil, err
	}
	dy, w := op.Args[0].Type, op.Args[1].Type
	if dy.Shape[1] != w.Shape[0] {
		return nil, fmt.Errorf("gradient %v has %d channels but weight %v has %d outputs", dy, dy.Shape[1], w, w.Shape[0])
	}
	x := Shape{dy.Shape[0], w.Shape[1], op.Int("in_h"), op.Int("in_w")}
	if err := checkConvGeometry(op, x, w.Shape, dy.Shape); err != nil {
		return nil, err
	}
	return one(T32(x...)), nil
}

func inferConv2DDw(op *Op) ([]Type, error) {
	if err := argsF32(op, 4); err != nil {
		return nil, err
	}
	if err := positive(op, "stride", "kernel"); err != nil {
		return nil, err
	}
	if err := nonNegative(op, "pad"); err != nil {
		return nil, err
	}
	dy, x := op.Args[0].Type, op.Args[1].Type
	if dy.Shape[0] != x.Shape[0] {
		return nil, fmt.Errorf("gradient %v and input %v have different batch sizes", dy, x)
	}
	k := op.Int("kernel")
	w := Shape{dy.Shape[1], x.Shape[1], k, k}
	if err := checkConvGeometry(op, x.Shape, w, dy.Shape); err != nil {
		return nil, err
	}
	return one(T32(w...)), nil
}

// checkConvGeometry checks that a conv of x by w with op's stride and pad
// gives y's spatial size.
func checkConvGeometry(op *Op, x, w, y Shape) error {
	s, p := op.Int("stride"), op.Int("pad")
	ho, err := convOut(x[2], w[2], s, p)
	if err != nil {
		return err
	}
	wo, err := convOut(x[3], w[3], s, p)
	if err != nil {
		return err
	}
	if ho != y[2] || wo != y[3] {
		return fmt.Errorf("input %v with kernel %dx%d, stride %d, pad %d gives %dx%d outputs, but the gradient is %dx%d",
			x, w[2], w[3], s, p, ho, wo, y[2], y[3])
	}
	return nil
}

func inferChanSum(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 2, 4)
	if err != nil {
		return nil, err
	}
	return one(T32(x.Shape[1])), nil
}

func inferBNNormGrad(op *Op) ([]Type, error) {
	dy, err := argF32(op, 0, 2, 4)
	if err != nil {
		return nil, err
	}
	if err := sameType(op, 0, 1); err != nil {
		return nil, err
	}
	c := dy.Shape[1]
	for i := 2; i < 5; i++ {
		if err := vecOf(op, i, c); err != nil {
			return nil, err
		}
	}
	v := T32(c)
	return []Type{dy, v, v, v, v}, nil
}

func inferBNStatsGrad(op *Op) ([]Type, error) {
	x, err := argF32(op, 2, 2, 4)
	if err != nil {
		return nil, err
	}
	for _, i := range []int{0, 1, 3} {
		if err := vecOf(op, i, x.Shape[1]); err != nil {
			return nil, err
		}
	}
	if len(op.Args) == 5 {
		if err := sameType(op, 2, 4); err != nil {
			return nil, err
		}
	}
	return one(x), nil
}

func inferSubsamplePadGrad(op *Op) ([]Type, error) {
	dy, err := argF32(op, 0, 4)
	if err != nil {
		return nil, err
	}
	if err := positive(op, "stride", "channels", "in_h", "in_w"); err != nil {
		return nil, err
	}
	s, c, h, w := op.Int("stride"), op.Int("channels"), op.Int("in_h"), op.Int("in_w")
	if c > dy.Shape[1] {
		return nil, fmt.Errorf("channels=%d is more than the gradient's %d", c, dy.Shape[1])
	}
	if (h-1)/s+1 != dy.Shape[2] || (w-1)/s+1 != dy.Shape[3] {
		return nil, fmt.Errorf("input %dx%d subsampled by %d does not give the gradient's %dx%d", h, w, s, dy.Shape[2], dy.Shape[3])
	}
	return one(T32(dy.Shape[0], c, h, w)), nil
}

func inferMaxPoolGrad(op *Op) ([]Type, error) {
	if err := argsF32(op, 4); err != nil {
		return nil, err
	}
	dy, x := op.Args[0].Type, op.Args[1].Type
	if err := positive(op, "kernel", "stride"); err != nil {
		return nil, err
	}
	if err := nonNegative(op, "pad"); err != nil {
		return nil, err
	}
	k, s, p := op.Int("kernel"), op.Int("stride"), op.Int("pad")
	ho, err := convOut(x.Shape[2], k, s, p)
	if err != nil {
		return nil, err
	}
	wo, err := convOut(x.Shape[3], k, s, p)
	if err != nil {
		return nil, err
	}
	want := Shape{x.Shape[0], x.Shape[1], ho, wo}
	if !dy.Shape.Equal(want) {
		return nil, fmt.Errorf("gradient is %v, want f32%v for input %v", dy, want, x)
	}
	return one(T32(x.Shape...)), nil
}

func inferGAPGrad(op *Op) ([]Type, error) {
	dy, err := argF32(op, 0, 2)
	if err != nil {
		return nil, err
	}
	if err := positive(op, "in_h", "in_w"); err != nil {
		return nil, err
	}
	return one(T32(dy.Shape[0], dy.Shape[1], op.Int("in_h"), op.Int("in_w"))), nil
}

func inferLinearDx(op *Op) ([]Type, error) {
	if err := argsF32(op, 2); err != nil {
		return nil, err
	}
	dy, w := op.Args[0].Type, op.Args[1].Type
	if dy.Shape[1] != w.Shape[0] {
		return nil, fmt.Errorf("gradient %v has %d features but weight %v has %d outputs", dy, dy.Shape[1], w, w.Shape[0])
	}
	return one(T32(dy.Shape[0], w.Shape[1])), nil
}

func inferLinearDw(op *Op) ([]Type, error) {
	if err := argsF32(op, 2); err != nil {
		return nil, err
	}
	dy, x := op.Args[0].Type, op.Args[1].Type
	if dy.Shape[0] != x.Shape[0] {
		return nil, fmt.Errorf("gradient %v and input %v have different batch sizes", dy, x)
	}
	return one(T32(dy.Shape[1], x.Shape[1])), nil
}

func inferSoftmaxCEGrad(op *Op) ([]Type, error) {
	if err := checkLabels(op, 0, 1); err != nil {
		return nil, err
	}
	return one(op.Args[0].Type), nil
}

func inferSGD(op *Op) ([]Type, error) {
	w, err := argF32(op, 0)
	if err != nil {
		return nil, err
	}
	if err := sameType(op, 0, 1); err != nil {
		return nil, err
	}
	if err := sameType(op, 0, 2); err != nil {
		return nil, err
	}
	if _, err := argF32(op, 3, 0); err != nil {
		return nil, err
	}
	return []Type{w, w}, nil
}

var prologues = []string{"none", "relu", "affine_relu"}

func checkPrologue(op *Op) (string, error) {
	p := op.Str("prologue")
	if !slices.Contains(prologues, p) {
		return "", fmt.Errorf("prologue=%q, want none, relu or affine_relu", p)
	}
	return p, nil
}

func inferConv2DFused(op *Op) ([]Type, error) {
	prologue, err := checkPrologue(op)
	if err != nil {
		return nil, err
	}
	bias, residual, stats := op.Bool("bias"), op.Bool("residual"), op.Bool("stats")
	want := 2
	for _, present := range []bool{bias, prologue == "affine_relu", prologue == "affine_relu", residual} {
		if present {
			want++
		}
	}
	if len(op.Args) != want {
		return nil, fmt.Errorf("has %d arguments, want %d for bias=%v, prologue=%s, residual=%v", len(op.Args), want, bias, prologue, residual)
	}
	x, w, y, err := convTypes(op)
	if err != nil {
		return nil, err
	}
	i := 2
	if bias {
		if err := vecOf(op, i, w.Shape[0]); err != nil {
			return nil, err
		}
		i++
	}
	if prologue == "affine_relu" {
		for k := 0; k < 2; k++ {
			if err := vecOf(op, i, x.Shape[1]); err != nil {
				return nil, err
			}
			i++
		}
	}
	if residual {
		r, err := argF32(op, i, 4)
		if err != nil {
			return nil, err
		}
		if !r.Shape.Equal(y.Shape) {
			return nil, fmt.Errorf("residual %v does not match the output shape %v", r, y.Shape)
		}
	}
	if stats {
		c := T32(w.Shape[0])
		return []Type{y, c, c}, nil
	}
	return one(y), nil
}

func inferBNFold(op *Op) ([]Type, error) {
	w, err := argF32(op, 0, 2, 4)
	if err != nil {
		return nil, err
	}
	c := w.Shape[0]
	for i := 1; i < len(op.Args); i++ {
		if err := vecOf(op, i, c); err != nil {
			return nil, err
		}
	}
	return []Type{T32(w.Shape...), T32(c)}, nil
}

// perChannel checks that every argument is f32[C] for one C and returns C.
func perChannel(op *Op, idx ...int) (int, error) {
	t, err := argF32(op, idx[0], 1)
	if err != nil {
		return 0, err
	}
	for _, i := range idx[1:] {
		if err := vecOf(op, i, t.Shape[0]); err != nil {
			return 0, err
		}
	}
	return t.Shape[0], nil
}

func inferBNAffine(op *Op) ([]Type, error) {
	c, err := perChannel(op, 0, 1, 2, 3)
	if err != nil {
		return nil, err
	}
	return []Type{T32(c), T32(c)}, nil
}

func inferMoments(op *Op) ([]Type, error) {
	c, err := perChannel(op, 0, 1)
	if err != nil {
		return nil, err
	}
	if err := positive(op, "count"); err != nil {
		return nil, err
	}
	return []Type{T32(c), T32(c)}, nil
}

func inferAffineReLU(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 2, 4)
	if err != nil {
		return nil, err
	}
	for i := 1; i < 3; i++ {
		if err := vecOf(op, i, x.Shape[1]); err != nil {
			return nil, err
		}
	}
	return one(x), nil
}

func inferRelayout(op *Op) ([]Type, error) {
	x, err := argF32(op, 0, 4)
	if err != nil {
		return nil, err
	}
	switch l := op.Str("layout"); l {
	case "nchw":
		x.Layout = NCHW
	case "nchw8c":
		if x.Shape[1]%8 != 0 {
			return nil, fmt.Errorf("layout nchw8c needs a multiple of 8 channels, input %v has %d", x, x.Shape[1])
		}
		x.Layout = NCHW8c
	default:
		return nil, fmt.Errorf("layout=%q, want nchw or nchw8c", l)
	}
	return one(x), nil
}

func inferConv2DDwFused(op *Op) ([]Type, error) {
	prologue, err := checkPrologue(op)
	if err != nil {
		return nil, err
	}
	want := 2
	if prologue == "affine_relu" {
		want = 4
	}
	if len(op.Args) != want {
		return nil, fmt.Errorf("has %d arguments, want %d for prologue=%s", len(op.Args), want, prologue)
	}
	dy, err := argF32(op, 0, 4)
	if err != nil {
		return nil, err
	}
	x, err := argF32(op, 1, 4)
	if err != nil {
		return nil, err
	}
	if want == 4 {
		if _, err := perChannel(op, 2, 3); err != nil {
			return nil, err
		}
		if err := vecOf(op, 2, x.Shape[1]); err != nil {
			return nil, err
		}
	}
	if err := positive(op, "stride", "kernel"); err != nil {
		return nil, err
	}
	if err := nonNegative(op, "pad"); err != nil {
		return nil, err
	}
	if dy.Shape[0] != x.Shape[0] {
		return nil, fmt.Errorf("gradient %v and input %v have different batch sizes", dy, x)
	}
	k := op.Int("kernel")
	w := Shape{dy.Shape[1], x.Shape[1], k, k}
	if err := checkConvGeometry(op, x.Shape, w, dy.Shape); err != nil {
		return nil, err
	}
	return one(T32(w...)), nil
}

func inferAffineReLUGrad(op *Op) ([]Type, error) {
	da, err := argF32(op, 0, 2, 4)
	if err != nil {
		return nil, err
	}
	if err := sameType(op, 0, 1); err != nil {
		return nil, err
	}
	for i := 2; i < 4; i++ {
		if err := vecOf(op, i, da.Shape[1]); err != nil {
			return nil, err
		}
	}
	if len(op.Args) == 5 {
		if err := sameType(op, 1, 4); err != nil {
			return nil, err
		}
	}
	c := T32(da.Shape[1])
	return []Type{da, c, c}, nil
}

func inferBNAffineGrad(op *Op) ([]Type, error) {
	c, err := perChannel(op, 0, 1, 2, 3, 4)
	if err != nil {
		return nil, err
	}
	v := T32(c)
	return []Type{v, v, v, v}, nil
}

func inferMomentsGrad(op *Op) ([]Type, error) {
	c, err := perChannel(op, 0, 1, 2)
	if err != nil {
		return nil, err
	}
	if err := positive(op, "count"); err != nil {
		return nil, err
	}
	return []Type{T32(c), T32(c)}, nil
}

func inferStatsGrad(op *Op) ([]Type, error) {
	y, err := argF32(op, 2, 2, 4)
	if err != nil {
		return nil, err
	}
	if _, err := perChannel(op, 0, 1); err != nil {
		return nil, err
	}
	if err := vecOf(op, 0, y.Shape[1]); err != nil {
		return nil, err
	}
	return one(y), nil
}
