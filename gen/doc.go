// Package gen holds the go generate entry points and the packages they
// generate, one directory per network. Generated code is committed and
// reproducible: regenerating gives no diff, which CI checks.
package gen
