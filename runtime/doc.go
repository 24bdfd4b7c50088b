// Package runtime is what every generated package shares and need not
// specialize: datasets, augmentation, schedules, checkpoints, metrics,
// progress, plots, a thread pool and shape-generic kernels.
//
// It never imports the compiler (ir, passes, codegen) or avo, so a
// generated trainer pulls in no compiler code.
package runtime
