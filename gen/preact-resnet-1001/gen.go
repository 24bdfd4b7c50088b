package preactresnet1001

// The package is preact-resnet-1001 compiled at batch 128: regenerate it with
// go generate after a change to the compiler (CI checks that it is up to date).
//go:generate go run ../../cmd/resnetc compile -preset preact-resnet-1001 -batch 128 -budget 2GiB -o .
