package preactresnet20

// The package is preact-resnet-20 compiled at batch 128: regenerate it with
// go generate after a change to the compiler (CI checks that it is up to date).
//go:generate go run ../../cmd/resnetc compile -preset preact-resnet-20 -batch 128 -o .
