// Package passes holds resnetc's compiler passes over ir graphs and the
// pipeline that runs them in order.
//
// Each pass is a plain function, func(*ir.Graph) error, in a file of its
// own: Autodiff turns a training-mode forward graph into one training step
// (loss, backward ops, SGD update). pipeline.go lists the passes as data,
// with the graph modes each applies to and the ordering constraints between
// them written down beside the table, so that the order is checked by a
// test rather than implied. Run executes the table, optionally verifying
// the graph after every pass and stopping after a named one (for dumps).
//
// Every pass has golden tests (testdata/passes/<pass>/*.txtar: IR text in,
// IR text out) and a numerical test against the reference interpreter.
//
// The package imports only ir and the standard library.
package passes
