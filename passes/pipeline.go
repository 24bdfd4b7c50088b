package passes

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/resnetc/resnetc/ir"
)

// Pass is one step of the pipeline: a named graph transformation and the
// graph modes it applies to. Passes are data so that the order can be
// checked, listed, verified between steps and stopped at by name.
type Pass struct {
	Name  string
	Fn    func(*ir.Graph, *Context) error
	Modes []ir.Mode // the graph modes it runs on; it is skipped on the others
	// Required passes cannot be disabled: without them the graph is not a
	// complete step (an optional pass only makes it faster or smaller).
	Required bool
}

// passes is the pipeline, in execution order.
var passes = []Pass{
	{Name: "fold-bn", Fn: graphOnly(FoldBatchNorm), Modes: []ir.Mode{ir.Infer}},
	{Name: "fuse-bn-relu-conv", Fn: graphOnly(FuseBNReLUConv), Modes: []ir.Mode{ir.Infer, ir.Train}},
	{Name: "autodiff", Fn: autodiffPass, Modes: []ir.Mode{ir.Train}, Required: true},
	{Name: "layout", Fn: graphOnly(Layout), Modes: []ir.Mode{ir.Infer, ir.Train}},
	{Name: "remat", Fn: rematPass, Modes: []ir.Mode{ir.Train}},
}

// Context carries what a pass needs beyond the graph (the options of the
// run) and what it reports back.
type Context struct {
	// Budget is the arena budget in bytes for the remat pass; 0 asks for
	// no rematerialization.
	Budget int64
	// Remat is the remat pass's report, when it ran.
	Remat *RematReport
	// SGD are the update's hyperparameters; nil means DefaultSGD.
	SGD *SGDOptions
}

// autodiffPass builds the training step with the run's SGD options.
func autodiffPass(g *ir.Graph, c *Context) error {
	o := DefaultSGD
	if c.SGD != nil {
		o = *c.SGD
	}
	return AutodiffWith(o)(g)
}

// graphOnly adapts a pass that needs only the graph.
func graphOnly(f func(*ir.Graph) error) func(*ir.Graph, *Context) error {
	return func(g *ir.Graph, _ *Context) error { return f(g) }
}

// rematPass rematerializes to the run's budget, if one was given.
func rematPass(g *ir.Graph, c *Context) error {
	rep, err := Rematerialize(g, c.Budget)
	if err != nil {
		return err
	}
	c.Remat = rep
	return nil
}

// order lists ordering constraints between passes: before must run before
// after. Both must be in the table (a test checks it), so a constraint is
// added together with its second pass.
var order = []struct{ before, after string }{
	// Inner BNs fold into their convs first, so only the residual-stream
	// BN is left to become a prologue.
	{"fold-bn", "fuse-bn-relu-conv"},
	// In training, fusion rewrites the forward graph; autodiff then knows
	// the fused ops' gradients, so the backward recomputes activations
	// from the stored pre-BN tensors.
	{"fuse-bn-relu-conv", "autodiff"},
	// Blocking applies to every tensor of the step, the backward's too.
	{"autodiff", "layout"},
	{"fuse-bn-relu-conv", "layout"},
	// Folding matches plain conv -> bnnorm pairs; it works on blocked
	// graphs too, but folding first keeps the layout pass's input small.
	{"fold-bn", "layout"},
	// Rematerialization plans the arena of the final graph: the step's
	// ops, in their final layout, are what it recomputes and measures.
	{"autodiff", "remat"},
	{"layout", "remat"},
}

// Passes returns the pipeline, in execution order.
func Passes() []Pass { return slices.Clone(passes) }

// RunOptions control Run.
type RunOptions struct {
	// VerifyEach runs ir.Verify before the first pass and after every
	// pass that ran; a failure names the pass.
	VerifyEach bool
	// StopAfter, if not empty, stops the pipeline after the named pass
	// (whether or not it applied to the graph's mode).
	StopAfter string
	// Disable names optional passes to skip.
	Disable []string
	// Budget is the arena budget in bytes of a training step: the remat
	// pass recomputes forward values in the backward pass until the
	// memory plan fits it. 0 (the default) recomputes nothing.
	Budget int64
	// SGD are the hyperparameters of the update autodiff appends; nil
	// means DefaultSGD, the paper's.
	SGD *SGDOptions
}

// Error is an error from a pass: the pass's name and what went wrong.
type Error struct {
	Pass string
	Err  error
}

func (e *Error) Error() string { return e.Pass + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Run runs the pipeline on g in place and returns what the passes
// reported. A pass error, a panic inside a pass and a verification failure
// after a pass are returned as an *Error naming the pass; after one, g is
// in an unspecified state.
func Run(g *ir.Graph, opts RunOptions) (*Context, error) {
	c := &Context{Budget: opts.Budget, SGD: opts.SGD}
	return c, run(g, passes, opts, c)
}

func run(g *ir.Graph, ps []Pass, opts RunOptions, c *Context) error {
	if opts.Budget < 0 {
		return fmt.Errorf("budget %d bytes is negative", opts.Budget)
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	known := func(n string) error {
		if !slices.Contains(names, n) {
			return fmt.Errorf("unknown pass %q (passes: %s)", n, strings.Join(names, ", "))
		}
		return nil
	}
	if opts.StopAfter != "" {
		if err := known(opts.StopAfter); err != nil {
			return err
		}
	}
	for _, n := range opts.Disable {
		if err := known(n); err != nil {
			return err
		}
		if i := slices.Index(names, n); ps[i].Required {
			return fmt.Errorf("pass %q is required and cannot be disabled", n)
		}
	}
	if opts.VerifyEach {
		if err := ir.Verify(g); err != nil {
			return fmt.Errorf("graph does not verify before the first pass: %w", err)
		}
	}
	for _, p := range ps {
		if slices.Contains(p.Modes, g.Mode) && !slices.Contains(opts.Disable, p.Name) {
			if err := runPass(g, p, c); err != nil {
				return err
			}
			if opts.VerifyEach {
				if err := ir.Verify(g); err != nil {
					return &Error{Pass: p.Name, Err: fmt.Errorf("graph does not verify after the pass: %w", err)}
				}
			}
		}
		if p.Name == opts.StopAfter {
			break
		}
	}
	return nil
}

// runPass runs one pass, wrapping its error and recovering a panic, both
// with the pass's name.
func runPass(g *ir.Graph, p Pass, c *Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Pass: p.Name, Err: fmt.Errorf("panic: %v\n%s", r, debug.Stack())}
		}
	}()
	if err := p.Fn(g, c); err != nil {
		if pe, ok := err.(*Error); ok && pe.Pass == p.Name {
			return err
		}
		return &Error{Pass: p.Name, Err: err}
	}
	return nil
}

// checkOrder reports the first ordering constraint that ps violates or
// that names a pass not in ps.
func checkOrder(ps []Pass, order []struct{ before, after string }) error {
	pos := map[string]int{}
	for i, p := range ps {
		pos[p.Name] = i
	}
	for _, c := range order {
		i, ok := pos[c.before]
		if !ok {
			return fmt.Errorf("order constraint %s < %s: no pass %q", c.before, c.after, c.before)
		}
		j, ok := pos[c.after]
		if !ok {
			return fmt.Errorf("order constraint %s < %s: no pass %q", c.before, c.after, c.after)
		}
		if i >= j {
			return fmt.Errorf("pass %q must run before %q", c.before, c.after)
		}
	}
	return nil
}
