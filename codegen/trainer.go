package codegen

import (
	"fmt"
	"strings"
)

// trainPkg is the import path of the trainer every generated network
// shares.
const trainPkg = "github.com/resnetc/resnetc/runtime/train"

// networkSource describes a generated network to the trainer.
const networkSource = `package PKG

import "github.com/resnetc/resnetc/runtime/train"

// Network describes the network to the trainer (package runtime/train):
// its shapes, its compiled hyperparameters and how to make a model.
func Network() train.Network {
	return train.Network{
		Name:        Name,
		Arch:        Arch,
		Batch:       Batch,
		Height:      Height,
		Width:       Width,
		Channels:    Channels,
		Classes:     Classes,
		TrainFLOPs:  TrainFLOPs,
		Momentum:    Momentum,
		WeightDecay: WeightDecay,
		New: func(threads int, seed uint64) (train.Model, error) {
			m, err := New(threads, seed)
			if err != nil {
				return nil, err
			}
			return m, nil
		},
	}
}
`

// trainerSource is the command that trains, evaluates and runs the
// network.
const trainerSource = `// Command trainer trains NAME on CIFAR-10 or CIFAR-100 (or, with no data
// given, on a built-in synthetic dataset), evaluates it and classifies
// images with it. Run it with -h for its subcommands and flags.
package main

import (
	"os"

	net "IMPORT"
	"github.com/resnetc/resnetc/runtime/train"
)

func main() {
	os.Exit(train.Main(net.Network(), os.Args[1:], os.Stdout, os.Stderr))
}
`

func networkFile(pkg string) []byte {
	return []byte(strings.Replace(networkSource, "package PKG", header+"\n\npackage "+pkg, 1))
}

func trainerFile(name, importPath string) []byte {
	src := strings.NewReplacer("NAME", name, "IMPORT", importPath).Replace(trainerSource)
	return []byte(fmt.Sprintf("%s\n\n%s", header, src))
}
