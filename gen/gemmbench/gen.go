package gemmbench

// The kernels, their stubs and twins, and the shape-generic support code
// are written by gemmgen from the builders in codegen/kernels; the set of
// kernels is the data in codegen/internal/gemmgen/main.go.
//go:generate go run ../../codegen/internal/gemmgen -pkg gemmbench -dir .
