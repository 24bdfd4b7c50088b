// Package passes holds resnetc's compiler passes over ir graphs and the
// pipeline that runs them in order.
//
// The pipeline (pipeline.go) lists the passes as data, with the graph
// modes each applies to and the ordering constraints between them written
// down beside the table, so that the order is checked by a test rather
// than implied:
//
//	fold-bn            (infer)  FoldBatchNorm: conv followed by BN becomes one conv with folded weights and bias
//	fuse-bn-relu-conv  (both)   FuseBNReLUConv: BN-ReLU-conv becomes one conv with a prologue, a residual
//	                            add its epilogue; in training, batch statistics come from the producer's
//	                            epilogue and the backward recomputes activations from pre-BN tensors
//	autodiff           (train)  Autodiff: loss, backward ops and the SGD update of one training step
//	layout             (both)   Layout: blocked NCHW8c wherever the channel count is a multiple of 8
//	remat              (train)  Rematerialize: recompute forward values in the backward pass to fit a budget:
//	                            elementwise outputs from stored tensors, the residual stream of runs of
//	                            units from stored conv outputs, or whole runs of units from a checkpoint
//
// Run executes the table, optionally verifying the graph after every pass,
// stopping after a named one (for dumps) and with the arena budget of the
// remat pass. PlanMemory (planmem.go) is the analysis that follows: the
// schedule, liveness, in-place reuse and arena offsets that generated code
// allocates once.
//
// Every pass is in a file of its own, with golden tests
// (testdata/passes/<pass>/*.txtar: IR text in, IR text out, and
// testdata/passes/pipeline: every pass on basic and bottleneck nets, in
// original and pre-activation order) and a numerical test against the
// reference interpreter. A graph a pass cannot handle gets an error that
// names the op.
//
// The package imports only ir and the standard library.
package passes
