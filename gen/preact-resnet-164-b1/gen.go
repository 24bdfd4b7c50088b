package preactresnet164b1

// The package is preact-resnet-164 compiled at batch 1, for single-image
// inference (bench/run.sh measures its Infer beside PyTorch's): regenerate
// it with go generate after a change to the compiler (CI checks that it is
// up to date).
//go:generate go run ../../cmd/resnetc compile -preset preact-resnet-164 -batch 1 -pkg preactresnet164b1 -o .
