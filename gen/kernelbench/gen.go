package kernelbench

// The kernels, their stubs and twins, and the shape-generic support code
// are written by kernelgen from the builders in codegen/kernels; the set
// of kernels is the data in codegen/internal/kernelgen/set.go.
//go:generate go run ../../codegen/internal/kernelgen -pkg kernelbench -dir .
