// Package gosrc is the shape-generic Go that every generated kernel
// package carries: the conv kernels' pure-Go twin, the layout and weight
// packing helpers, the statistics reduction and the peak measurement.
//
// It is an ordinary package so that this code is compiled, vetted and
// tested where it is written; the kernel generator copies gosrc.go into
// each generated package under that package's name (see
// kernels.SupportSource). It must therefore import only the standard
// library and refer to nothing outside gosrc.go.
package gosrc
