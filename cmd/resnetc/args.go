package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"
)

// errUsage is returned when the flag package has already printed the
// problem and the usage.
var errUsage = errors.New("usage")

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// archFlags are the flags every command that reads an architecture takes.
type archFlags struct {
	preset string
	depth  int
	batch  int
}

func (a *archFlags) register(fs *flag.FlagSet, defaultBatch int) {
	fs.StringVar(&a.preset, "preset", "", "built-in architecture `NAME` (see 'resnetc presets')")
	fs.IntVar(&a.depth, "depth", 0, "instantiate the architecture at depth `N` (overrides its depth)")
	fs.IntVar(&a.batch, "batch", defaultBatch, "batch size `N`")
}

// parseFlags parses args with fs, allowing flags after the positional
// FILE argument (resnetc describe net.arch -json). It returns the
// positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usageError{errUsage}
			}
			return nil, usageError{errUsage}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: resnetc %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// load reads the architecture named by -preset or by the one positional
// FILE argument and applies -depth.
func (a *archFlags) load(cmd string, pos []string) (*resnet.Arch, error) {
	var arch *resnet.Arch
	switch {
	case a.preset != "" && len(pos) > 0:
		return nil, usageError{fmt.Errorf("resnetc %s: give -preset or a FILE, not both", cmd)}
	case len(pos) > 1:
		return nil, usageError{fmt.Errorf("resnetc %s: one FILE at most, got %d arguments", cmd, len(pos))}
	case a.preset != "":
		var err error
		if arch, err = resnet.LoadPreset(a.preset); err != nil {
			return nil, err
		}
	case len(pos) == 1:
		src, err := os.ReadFile(pos[0])
		if err != nil {
			return nil, err
		}
		if arch, err = resnet.Parse(pos[0], src); err != nil {
			return nil, err
		}
	default:
		return nil, usageError{fmt.Errorf("resnetc %s: give -preset NAME or a FILE (see 'resnetc presets')", cmd)}
	}
	if a.depth != 0 {
		if err := arch.SetDepth(a.depth); err != nil {
			return nil, fmt.Errorf("-depth %d: %w", a.depth, err)
		}
	}
	if a.batch < 1 {
		return nil, usageError{fmt.Errorf("resnetc %s: -batch %d: want a positive batch size", cmd, a.batch)}
	}
	return arch, nil
}

// parseMode parses the -mode flag.
func parseMode(s string) (ir.Mode, error) {
	switch s {
	case "infer":
		return ir.Infer, nil
	case "train":
		return ir.Train, nil
	}
	return 0, usageError{fmt.Errorf("-mode %q: want infer or train", s)}
}
