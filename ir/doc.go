// Package ir is resnetc's intermediate representation: a directed acyclic
// graph of operations over tensors whose shapes are all known at compile
// time.
//
// A Graph is a list of Ops in schedule order. Every Op produces zero or more
// Values; an Op's arguments must be Values produced earlier in the list.
// Graph inputs, trainable parameters and persistent state (BatchNorm running
// statistics, momentum buffers) are themselves Ops with no arguments, so a
// graph is nothing but its op list, its named outputs and the updates a
// training step writes back to parameters and state.
//
// The package also holds the op table (OpInfo: arity, attributes and shape
// inference for every op), the text form (Print and Parse round-trip
// exactly) and Verify, which every pass is checked against. It imports only
// the standard library.
package ir
