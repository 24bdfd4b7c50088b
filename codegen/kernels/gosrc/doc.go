// Package gosrc is the shape-generic Go that every generated kernel
// package carries: the conv kernels' pure-Go twin, the layout and weight
// packing helpers, the statistics reduction and the peak measurement
// (gosrc.go), for packages with backward kernels their twins, weight
// packing and partial-sum reduction (conv3x3bwd.go), and for packages
// with Winograd kernels their driver, transforms' twins and weight
// transform (winograd.go).
//
// It is an ordinary package so that this code is compiled, vetted and
// tested where it is written; the kernel generator copies gosrc.go into
// each generated package under that package's name (see
// kernels.SupportSource), and conv3x3bwd.go and winograd.go beside it
// where needed (kernels.SupportBwdSource, kernels.WinogradSupportSource).
// They must therefore import only the standard library; gosrc.go refers
// to nothing outside itself, conv3x3bwd.go to nothing outside the two,
// and winograd.go to nothing outside the two (the generated code hands
// it the assembly transforms and the 1x1 kernels).
package gosrc
