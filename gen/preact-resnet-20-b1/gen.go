package preactresnet20b1

// The package is preact-resnet-20 compiled at batch 1, for single-image
// inference (bench/run.sh measures its Infer beside PyTorch's): regenerate
// it with go generate after a change to the compiler (CI checks that it is
// up to date).
//go:generate go run ../../cmd/resnetc compile -preset preact-resnet-20 -batch 1 -pkg preactresnet20b1 -o .
