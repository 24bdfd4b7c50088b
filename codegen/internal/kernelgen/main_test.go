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

const pkgDir = "../../../gen/kernelbench"

// TestCommittedOutput checks that the committed gen/kernelbench equals a
// fresh render (what CI's go generate diff also checks), that rendering is
// deterministic, and that no stale generated file lies beside it.
func TestCommittedOutput(t *testing.T) {
	files, err := render("kernelbench", benchSet())
	if err != nil {
		t.Fatal(err)
	}
	again, err := render("kernelbench", benchSet())
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
			t.Errorf("%v (run go generate ./gen/kernelbench)", err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s is stale: %s (run go generate ./gen/kernelbench)", name, firstDiff(got, data))
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
			t.Errorf("%s is generated but kernelgen no longer writes it", e.Name())
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

// TestBenchSet checks the kernel set against the test plan: the stage
// shapes at batch 128, every prologue with every epilogue on at least
// three shapes, and the odd edges.
func TestBenchSet(t *testing.T) {
	set := benchSet()
	combos := map[string]map[[5]int]bool{} // shape -> set of (prologue, bias, res, relu, stats)
	shape := func(c kernels.Conv3x3) string {
		c.Prologue, c.Bias, c.Residual, c.ReLU, c.Stats = 0, false, false, false, false
		return c.Name()
	}
	var sizes, strides2, batches = map[[2]int]bool{}, map[[2]int]bool{}, map[int]bool{}
	stages := 0
	for _, c := range set.Convs {
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
		if combos[shape(c)] == nil {
			combos[shape(c)] = map[[5]int]bool{}
		}
		combos[shape(c)][[5]int{int(c.Prologue), b2i(c.Bias), b2i(c.Residual), b2i(c.ReLU), b2i(c.Stats)}] = true
		sizes[[2]int{c.H, c.W}] = true
		batches[c.N] = true
		if c.Stride == 2 {
			strides2[[2]int{c.H % 2, c.W % 2}] = true
		}
		if c.N == BenchBatch {
			stages++
		}
	}
	full := 0
	for _, cs := range combos {
		if len(cs) == 3*16 {
			full++
		}
	}
	if full < 3 {
		t.Errorf("every prologue x epilogue on %d shapes, want at least 3", full)
	}
	if stages != 10 {
		t.Errorf("%d batch-%d kernels, want the 5 stage shapes, plain and fused", stages, BenchBatch)
	}
	for _, hw := range [][2]int{{7, 7}, {5, 9}, {1, 1}, {2, 3}} {
		if !sizes[hw] {
			t.Errorf("no kernel of size %dx%d", hw[0], hw[1])
		}
	}
	if !strides2[[2]int{1, 1}] || !strides2[[2]int{0, 0}] || !batches[1] || !batches[3] {
		t.Errorf("missing edges: stride-2 size parities %v, batches %v", strides2, batches)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestBwdSet checks the backward kernels against the test plan: the five
// stage shapes at batch 128 (backward-weights plain and with the BN-ReLU
// prologue), and small shapes with 1 to 5 channel blocks on either side,
// stride 2 on every size parity and on sizes of 1, every prologue, and
// for backward-weights every remainder of the pixel loop's chunk.
func TestBwdSet(t *testing.T) {
	set := benchSet()
	type edges struct {
		in, out, parities, prologues map[int]bool
		stages                       int
	}
	tally := func(e *edges, n, cin, cout, h, w, stride int, p kernels.Prologue) {
		if n == BenchBatch {
			e.stages++
			return
		}
		e.in[cin/8], e.out[cout/8], e.prologues[int(p)] = true, true, true
		if stride == 2 {
			e.parities[h%2*2+w%2] = true
			if h == 1 || w == 1 {
				e.parities[-1] = true
			}
		}
	}
	check := func(what string, e *edges, stages int) {
		t.Helper()
		if e.stages != stages {
			t.Errorf("%s: %d batch-%d kernels, want %d", what, e.stages, BenchBatch, stages)
		}
		for b := 1; b <= 5; b++ {
			if !e.in[b] || !e.out[b] {
				t.Errorf("%s: no kernel with %d input or output channel blocks", what, b)
			}
		}
		for _, p := range []int{-1, 0, 1, 3} {
			if !e.parities[p] {
				t.Errorf("%s: stride 2 lacks the size parity %d (-1: a size of 1)", what, p)
			}
		}
	}
	newEdges := func() *edges {
		return &edges{in: map[int]bool{}, out: map[int]bool{}, parities: map[int]bool{}, prologues: map[int]bool{}}
	}
	dx := newEdges()
	for _, d := range set.Dxs {
		if err := d.Validate(); err != nil {
			t.Error(err)
		}
		tally(dx, d.N, d.Cin, d.Cout, d.H, d.W, d.Stride, 0)
	}
	check("dx", dx, 5)
	dw := newEdges()
	rems := map[int]bool{}
	for _, d := range set.Dws {
		if err := d.Validate(); err != nil {
			t.Error(err)
		}
		tally(dw, d.N, d.Cin, d.Cout, d.H, d.W, d.Stride, d.Prologue)
		if d.N != BenchBatch {
			rems[d.OutW()%6] = true
			if d.OutW() >= 12 {
				rems[-1] = true
			}
		}
	}
	check("dw", dw, 10)
	for _, p := range kernels.Prologues {
		if !dw.prologues[int(p)] {
			t.Errorf("dw: no small kernel with prologue %s", p)
		}
	}
	for r := -1; r < 6; r++ {
		if !rems[r] {
			t.Errorf("dw: no small kernel whose row leaves %d pixels after the chunks of 6 (-1: two chunks)", r)
		}
	}
}
