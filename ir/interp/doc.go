// Package interp is the reference interpreter for resnetc graphs: it runs
// any ir.Graph that ir.Verify accepts, op by op, with plain Go loops over
// float64 values.
//
// It is the oracle the rest of the compiler is checked against. A pass is
// correct when the interpreter gives the same outputs and gradients before
// and after it; a generated kernel is correct when it agrees with the
// interpreter on the same inputs. So every op here is written to be
// obviously right rather than fast: one loop nest per formula, the formula
// in the comment, accumulation in float64. Options.Float32 rounds every
// stored tensor to float32, as generated code stores them, for comparisons
// at float32 precision; gradient checks by finite differences run without
// it.
//
// Tensors are always in logical order (NCHW for rank 4): layouts are a
// storage decision of generated code and are ignored here.
package interp
