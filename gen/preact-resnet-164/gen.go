package preactresnet164

// The package is preact-resnet-164 compiled at batch 128: regenerate it with
// go generate after a change to the compiler (CI checks that it is up to date).
//go:generate go run ../../cmd/resnetc compile -preset preact-resnet-164 -batch 128 -o .
