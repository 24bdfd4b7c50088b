package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/resnetc/resnetc/codegen"
	"github.com/resnetc/resnetc/passes"
)

func runCompile(args []string, stdout, stderr io.Writer) error {
	var af archFlags
	fs := newFlagSet("compile", "(-preset NAME | FILE) [-depth N] [-batch N] [-budget SIZE] [-winograd=false] -o DIR [-pkg NAME]", stderr)
	af.register(fs, 128)
	out := fs.String("o", "", "write the package into `DIR` (created if needed)")
	pkg := fs.String("pkg", "", "Go package `NAME` (default: the directory's name without punctuation)")
	importPath := fs.String("import-path", "", "the package's import `PATH`, for its trainer command (default: from the go.mod above DIR)")
	budgetFlag := fs.String("budget", "", "arena budget `SIZE` of the training step, such as 2GiB (default: no budget)")
	momentum := fs.Float64("momentum", passes.DefaultSGD.Momentum, "SGD momentum compiled into the training step")
	decay := fs.Float64("weight-decay", passes.DefaultSGD.Decay, "L2 weight decay compiled into the training step")
	winograd := fs.Bool("winograd", true, "run stride-1 3x3 convolutions (inference, and the training step's forward and backward-data) by Winograd F(4x4, 3x3); false runs them directly")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *out == "" {
		return usageError{fmt.Errorf("resnetc compile: -o DIR is required")}
	}
	var budget int64
	if *budgetFlag != "" {
		if budget, err = parseSize(*budgetFlag); err != nil || budget == 0 {
			if err == nil {
				err = fmt.Errorf("want a positive size")
			}
			return usageError{fmt.Errorf("-budget %q: %w", *budgetFlag, err)}
		}
	}
	arch, err := af.load("compile", pos)
	if err != nil {
		return err
	}
	name := *pkg
	if name == "" {
		abs, err := filepath.Abs(*out)
		if err != nil {
			return err
		}
		name = packageName(filepath.Base(abs))
	}
	ip := *importPath
	if ip == "" {
		if ip, err = moduleImportPath(*out); err != nil {
			return fmt.Errorf("resnetc compile: %w; give -import-path", err)
		}
	}
	sgd := passes.SGDOptions{Momentum: *momentum, Decay: *decay}
	p, err := codegen.Compile(arch, codegen.Options{Package: name, Batch: af.batch, Budget: budget, SGD: &sgd, ImportPath: ip, NoWinograd: !*winograd})
	if err != nil {
		return err
	}
	if err := p.WriteDir(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote package %s (%s, batch %d) to %s: %d files\n", name, arch.Name, af.batch, *out, len(p.Files))
	return nil
}

// packageName derives a Go package name from a directory name: lower
// case letters and digits only ("preact-resnet-20" -> "preactresnet20").
func packageName(dir string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(dir) {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if s == "" || unicode.IsDigit(rune(s[0])) {
		s = "net" + s
	}
	return s
}

// moduleImportPath derives the import path of directory dir from the
// go.mod of the module that holds it.
func moduleImportPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			mod := modulePath(data)
			if mod == "" {
				return "", fmt.Errorf("%s has no module line", filepath.Join(d, "go.mod"))
			}
			rel, err := filepath.Rel(d, abs)
			if err != nil {
				return "", err
			}
			if rel == "." {
				return mod, nil
			}
			return path.Join(mod, filepath.ToSlash(rel)), nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or above it", abs)
		}
		d = parent
	}
}

// modulePath returns the module path of a go.mod file's module line.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}
