package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/codegen/kernels"
	_ "github.com/resnetc/resnetc/internal/golden"
)

const pkgDir = "../../../runtime/nn"

// TestCommittedOutput checks that the committed files of runtime/nn equal
// a fresh render (what CI's go generate diff also checks), that rendering
// is deterministic, and that no stale generated file lies beside them.
func TestCommittedOutput(t *testing.T) {
	files, err := render()
	if err != nil {
		t.Fatal(err)
	}
	again, err := render()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Errorf("%d files rendered, want 3", len(files))
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
			t.Errorf("%v (run go generate ./runtime/nn)", err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s is stale: %s (run go generate ./runtime/nn)", name, firstDiff(got, data))
		}
	}
	for name, constraint := range map[string]string{
		"simd_amd64.s": kernels.AsmConstraint, "simd_amd64.go": kernels.AsmConstraint, "simd_other.go": kernels.NoAsmConstraint,
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
			t.Errorf("%s is generated but nnasm no longer writes it", e.Name())
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

// TestKernels checks every kernel against what the dispatch in
// runtime/nn assumes: it needs no more than AVX2 and FMA (the CPU
// features the dispatch checks), it has a stub, its name stands in the
// other builds' file, and its parameters are what the twin takes.
func TestKernels(t *testing.T) {
	files, err := render()
	if err != nil {
		t.Fatal(err)
	}
	asm, stubs, other := string(files["simd_amd64.s"]), string(files["simd_amd64.go"]), string(files["simd_other.go"])
	allowed := map[string]bool{"AVX": true, "AVX2": true, "FMA3": true, "CMOV": true}
	req := regexp.MustCompile(`// Requires: (.*)`)
	for _, m := range req.FindAllStringSubmatch(asm, -1) {
		for _, f := range strings.Split(m[1], ", ") {
			if !allowed[f] {
				t.Errorf("a kernel requires %s, which the dispatch does not check", f)
			}
		}
	}
	names := map[string]bool{}
	for _, k := range kernelList {
		if names[k.name] {
			t.Errorf("%s is defined twice", k.name)
		}
		names[k.name] = true
		if !strings.HasSuffix(k.name, "AVX2") {
			t.Errorf("%s: kernel names end in AVX2", k.name)
		}
		sig := strings.TrimPrefix(k.signature(), "func")
		if !strings.Contains(asm, "TEXT ·"+k.name+"(SB)") {
			t.Errorf("%s: no TEXT symbol", k.name)
		}
		if !strings.Contains(stubs, "//go:noescape\nfunc "+k.name+sig+"\n") {
			t.Errorf("%s: no noescape stub %s%s", k.name, k.name, sig)
		}
		if !regexp.MustCompile(`\n\t` + k.name + `\s+func` + regexp.QuoteMeta(sig) + `\n`).MatchString(other) {
			t.Errorf("%s: no nil variable of type func%s in simd_other.go", k.name, sig)
		}
		lenOK := false
		for _, p := range k.params {
			lenOK = lenOK || (p.name == k.lenOf && p.typ == slice32)
			if p.name == "sums" && (p.typ != lanes64x2 || !k.sums) || k.sums && p.typ == lanes64x2 && p.name != "sums" {
				t.Errorf("%s: parameter %s %s and sums = %v disagree", k.name, p.name, p.typ, k.sums)
			}
		}
		if !lenOK {
			t.Errorf("%s: its length comes from %q, not one of its slices", k.name, k.lenOf)
		}
	}
}
