package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/codegen/kernels"
	_ "github.com/resnetc/resnetc/internal/golden"
)

const pkgDir = "../../../gen/gemmbench"

// TestCommittedOutput checks that the committed gen/gemmbench equals a
// fresh render (what CI's go generate diff also checks), that rendering
// is deterministic, and that no stale generated file lies beside it.
func TestCommittedOutput(t *testing.T) {
	files, err := render("gemmbench", benchSet())
	if err != nil {
		t.Fatal(err)
	}
	again, err := render("gemmbench", benchSet())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if !bytes.Equal(data, again[name]) {
			t.Errorf("%s differs between two renders", name)
		}
		if !bytes.HasPrefix(data, []byte(kernels.Header+"\n")) {
			t.Errorf("%s does not start with %q", name, kernels.Header)
		}
		got, err := os.ReadFile(filepath.Join(pkgDir, name))
		if err != nil {
			t.Errorf("%v (run go generate ./gen/gemmbench)", err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s is stale: %s (run go generate ./gen/gemmbench)", name, firstDiff(got, data))
		}
	}
	for name, constraint := range map[string]string{
		"kernels_amd64.s": kernels.AsmConstraint, "kernels_amd64.go": kernels.AsmConstraint,
		"asm_amd64.go": kernels.AsmConstraint, "asm_other.go": kernels.NoAsmConstraint,
	} {
		if !bytes.Contains(files[name], []byte("\n//go:build "+constraint+"\n")) {
			t.Errorf("%s lacks the build constraint %q", name, constraint)
		}
	}
	entries, err := os.ReadDir(pkgDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(pkgDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, ours := files[e.Name()]; !ours && bytes.HasPrefix(data, []byte(kernels.Header)) {
			t.Errorf("%s is generated but gemmgen no longer writes it", e.Name())
		}
	}
}

// firstDiff describes the first line where committed and fresh differ.
func firstDiff(committed, fresh []byte) string {
	a, b := strings.Split(string(committed), "\n"), strings.Split(string(fresh), "\n")
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("line %d: committed %q, fresh %q", i+1, a[i], b[i])
		}
	}
	return fmt.Sprintf("committed has %d lines, fresh %d", len(a), len(b))
}

// TestBenchSet checks the kernel set against the test plan: each stage
// shape at batch 128 in every op, each epilogue flag alone and all of
// them with every prologue on one shape, every prologue of Dw, and the
// odd edges.
func TestBenchSet(t *testing.T) {
	set := benchSet()
	type dims struct{ cin, cout, h, w, stride int }
	ops := map[dims]map[kernels.Conv1x1Op]bool{}
	fwdFlags := map[dims]map[[5]int]bool{} // prologue, bias, res, relu, stats
	dwPrologues := map[dims]map[kernels.Prologue]bool{}
	sizes, strides2, batches := map[[2]int]bool{}, map[[2]int]bool{}, map[int]bool{}
	blocks := map[[2]int]bool{} // (op, blocks on the side its tiles vectorize)
	chunked := false
	for _, c := range set {
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
		d := dims{c.Cin, c.Cout, c.H, c.W, c.Stride}
		if ops[d] == nil {
			ops[d], fwdFlags[d], dwPrologues[d] = map[kernels.Conv1x1Op]bool{}, map[[5]int]bool{}, map[kernels.Prologue]bool{}
		}
		ops[d][c.Op] = true
		switch c.Op {
		case kernels.Conv1x1Fwd:
			fwdFlags[d][[5]int{int(c.Prologue), b2i(c.Bias), b2i(c.Residual), b2i(c.ReLU), b2i(c.Stats)}] = true
			blocks[[2]int{int(c.Op), c.Cout / 8}] = true
		case kernels.Conv1x1Dx:
			blocks[[2]int{int(c.Op), c.Cin / 8}] = true
		case kernels.Conv1x1Dw:
			dwPrologues[d][c.Prologue] = true
			blocks[[2]int{int(c.Op), c.Cout / 8}] = true
			chunked = chunked || c.Plan().Chunk > 0
		}
		sizes[[2]int{c.H, c.W}] = true
		batches[c.N] = true
		if c.Stride == 2 {
			strides2[[2]int{c.H % 2, c.W % 2}] = true
		}
	}
	for _, s := range stageShapeList {
		d := dims{s.cin, s.cout, s.hw, s.hw, s.stride}
		if len(ops[d]) != 3 {
			t.Errorf("stage shape %+v: ops %v, want all three", s, ops[d])
		}
	}
	flagsShape := false
	for d, fs := range fwdFlags {
		ok := len(dwPrologues[d]) == 3
		for _, f := range [][5]int{{0, 0, 0, 0, 0}, {0, 1, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 0, 0, 1, 0}, {0, 0, 0, 0, 1}, {0, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {2, 1, 1, 1, 1}} {
			ok = ok && fs[f]
		}
		flagsShape = flagsShape || ok
	}
	if !flagsShape {
		t.Error("no shape has each epilogue flag alone, all of them with every prologue, and Dw with every prologue")
	}
	for _, hw := range [][2]int{{5, 7}, {7, 5}, {1, 1}, {13, 13}} {
		if !sizes[hw] {
			t.Errorf("no kernel of size %dx%d", hw[0], hw[1])
		}
	}
	for _, op := range []kernels.Conv1x1Op{kernels.Conv1x1Fwd, kernels.Conv1x1Dx, kernels.Conv1x1Dw} {
		for nb := 1; nb <= 5; nb++ {
			if !blocks[[2]int{int(op), nb}] {
				t.Errorf("op %q: no kernel with %d vector blocks", op, nb)
			}
		}
	}
	if !strides2[[2]int{1, 1}] || !strides2[[2]int{0, 0}] || !batches[1] || !batches[3] || !chunked {
		t.Errorf("missing edges: stride-2 size parities %v, batches %v, Dw in chunks %v", strides2, batches, chunked)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
