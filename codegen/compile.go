package codegen

import (
	"errors"
	"fmt"
	"go/format"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"
	"github.com/resnetc/resnetc/passes"
)

// Options control Compile.
type Options struct {
	// Package is the Go package name of the generated code.
	Package string
	// Batch is the number of images of one step.
	Batch int
	// Budget is the arena budget in bytes of a training step (see
	// passes.RunOptions.Budget); 0 recomputes nothing.
	Budget int64
	// ImportPath is the package's import path; when set, the package
	// gets a trainer command in its subdirectory "trainer".
	ImportPath string
	// SGD are the update's hyperparameters, compiled into the training
	// step; nil means passes.DefaultSGD (momentum 0.9, weight decay 1e-4).
	SGD *passes.SGDOptions
	// NoWinograd makes Infer and the training step run their stride-1
	// 3x3 convolutions (forward and backward-data) directly instead of by
	// Winograd F(4x4, 3x3).
	NoWinograd bool
}

// Package is a generated Go package: file names and their contents.
type Package struct {
	Name  string
	Files map[string][]byte

	// The compiled graphs and their memory plans, for reports.
	Train, Infer         *ir.Graph
	TrainPlan, InferPlan *passes.MemPlan
}

// Compile lowers arch for training and for inference at opts.Batch, runs
// the pass pipeline and the memory planner on both, and writes the Go
// package that runs them: a model with its weights and state, one arena
// at the planned size, TrainStep and Infer.
func Compile(arch *resnet.Arch, opts Options) (*Package, error) {
	if !token.IsIdentifier(opts.Package) || opts.Package == "main" {
		return nil, fmt.Errorf("package name %q is not a Go identifier", opts.Package)
	}
	if opts.Batch < 1 {
		return nil, fmt.Errorf("batch %d: want a positive batch size", opts.Batch)
	}
	var recompute int64 // FLOPs the training step spends recomputing
	build := func(mode ir.Mode, budget int64) (*ir.Graph, *passes.MemPlan, error) {
		g, err := resnet.Lower(arch, opts.Batch, mode)
		if err != nil {
			return nil, nil, err
		}
		c, err := passes.Run(g, passes.RunOptions{Budget: budget, SGD: opts.SGD})
		if err != nil {
			return nil, nil, err
		}
		if mode == ir.Train && c.Remat != nil {
			recompute = c.Remat.ExtraFLOPs
		}
		p, err := passes.PlanMemory(g)
		if err != nil {
			return nil, nil, err
		}
		return g, p, nil
	}
	gt, pt, err := build(ir.Train, opts.Budget)
	if err != nil {
		return nil, fmt.Errorf("training step: %w", err)
	}
	gi, pi, err := build(ir.Infer, 0)
	if err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	pkg := &Package{Name: opts.Package, Files: map[string][]byte{}, Train: gt, Infer: gi, TrainPlan: pt, InferPlan: pi}
	e, err := newEmitter(arch, opts, gt, pt, gi, pi)
	if err != nil {
		return nil, err
	}
	e.recompute = recompute
	files, err := e.files()
	if err != nil {
		return nil, err
	}
	for name, src := range files {
		if !strings.HasSuffix(name, ".go") {
			pkg.Files[name] = src
			continue
		}
		out, err := format.Source(src)
		if err != nil {
			return nil, fmt.Errorf("BUG: codegen: %s does not format: %v", name, err)
		}
		pkg.Files[name] = out
	}
	return pkg, nil
}

// WriteDir writes the package's files into dir, creating it if needed.
// Each file is written to a temporary file and renamed, so an
// interrupted write leaves the old file or the new one, never half of
// one. Files of an earlier generation that the package no longer has
// and that carry the generated-code header are removed.
func (p *Package) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(p.Files))
	for n := range p.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		path := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(path, p.Files[n]); err != nil {
			errs = append(errs, err)
		}
	}
	old, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return err
	}
	for _, path := range old {
		base := filepath.Base(path)
		if _, ok := p.Files[base]; ok || !isGenerated(path) {
			continue
		}
		if err := os.Remove(path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isGenerated reports whether the file at path starts with the header of
// generated files.
func isGenerated(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, len(header))
	n, _ := f.Read(buf)
	return slices.Equal(buf[:n], []byte(header))
}

// writeFileAtomic replaces path with data via a temporary file in the
// same directory.
func writeFileAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && slices.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".resnetc-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
