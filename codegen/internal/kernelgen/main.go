// Command kernelgen writes the kernel benchmark package gen/kernelbench:
// the peak FMA loop and a set of shape-specialized 3x3 conv kernels,
// forward, backward-data and backward-weights (the ResNet stage shapes at
// batch 128, and small shapes with every odd edge and every fusion for the
// tests), in AVX2+FMA assembly with their pure-Go twins.
//
// Usage, from the package directory (see its gen.go):
//
//	go run ../../codegen/internal/kernelgen -pkg kernelbench -dir .
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/resnetc/resnetc/codegen/kernels"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kernelgen:", err)
		os.Exit(1)
	}
}

func run() error {
	// A flag set of its own: avo's build package registers its flags on
	// flag.CommandLine.
	fs := flag.NewFlagSet("kernelgen", flag.ContinueOnError)
	pkg := fs.String("pkg", "kernelbench", "name of the generated package")
	dir := fs.String("dir", ".", "directory to write the package's generated files into")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	files, err := render(*pkg, benchSet())
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(*dir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// kernelSet is the kernels of one generated package.
type kernelSet = kernels.Set

// render returns the generated files of package pkg holding set, by file
// name.
func render(pkg string, set kernelSet) (map[string][]byte, error) {
	return set.Render(pkg)
}
