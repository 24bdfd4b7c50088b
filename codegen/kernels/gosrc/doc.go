// Package gosrc is the shape-generic Go that every generated kernel
// package carries: the conv kernels' pure-Go twin, the layout and weight
// packing helpers, the statistics reduction and the peak measurement
// (gosrc.go), and for packages with backward kernels their twins, weight
// packing and partial-sum reduction (conv3x3bwd.go).
//
// It is an ordinary package so that this code is compiled, vetted and
// tested where it is written; the kernel generator copies gosrc.go into
// each generated package under that package's name (see
// kernels.SupportSource), and conv3x3bwd.go beside it where needed
// (kernels.SupportBwdSource). They must therefore import only the
// standard library; gosrc.go refers to nothing outside itself, and
// conv3x3bwd.go to nothing outside the two.
package gosrc
