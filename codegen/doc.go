// Package codegen turns a compiled ir.Graph into a self-contained Go
// package: Go source written with jennifer (the model, its training step,
// inference, weights I/O and a command) and AVX2+FMA kernels written with
// avo, each with a pure-Go twin.
//
// It imports ir and passes; the packages it writes import only runtime and
// the standard library.
package codegen
