// Package nn holds the shape-generic float32 kernels of generated
// packages: one function per IR op kind, with the op's shapes and
// attributes passed as constants by the generated code, and the worker
// pool (Ctx) they share.
//
// These kernels compute what the reference interpreter computes (package
// ir/interp defines every op), on float32 storage in the tensor's layout:
// an Act describes an activation, plain NCHW or blocked NCHW8c. Results
// may share storage with an argument where the memory plan computes them
// in place (elementwise ops, the residual of a fused conv, an SGD update
// into its weight and momentum), so every kernel reads an element before
// it writes the same element and never reads it again.
//
// Reductions are deterministic for a fixed thread count: work is split
// into fixed contiguous chunks, each worker reduces its own chunk, and the
// partial results are combined in worker order (per-image and per-channel
// sums are accumulated in float64).
//
// Specialized kernels (AVX2+FMA, per shape) live in the generated
// packages; these are their fallback for every shape and op they do not
// cover.
package nn
