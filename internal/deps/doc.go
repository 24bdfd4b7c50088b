// Package deps holds the module's import policy as data and the test that
// enforces it, in the manner of go/build's deps_test.go: a wrong import
// fails CI with a sentence saying which rule it breaks.
package deps
