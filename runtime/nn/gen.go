package nn

// The assembly kernels (simd_amd64.s), their stubs (simd_amd64.go) and
// the file that stands in for them in other builds (simd_other.go) are
// written by codegen/internal/nnasm; their twins and dispatch are in
// simd.go.
//go:generate go run ../../codegen/internal/nnasm
