package passes

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// goldenPass is a pass with golden cases in testdata/passes/<dir>/*.txtar.
type goldenPass struct {
	dir string
	fn  func(*ir.Graph) error
	// idempotent passes must leave their own output unchanged; the others
	// must reject it with an error.
	idempotent bool
}

// goldenPasses lists every pass with golden cases. A new pass adds a line
// here and a directory of cases.
var goldenPasses = []goldenPass{
	{dir: "autodiff", fn: Autodiff, idempotent: false},
}

// TestGolden runs every pass's golden cases. Each case is a txtar archive:
// a comment saying what the case is about, "-- in.ir --", then either
// "-- want.ir --" (the pass's output) or "-- err --" (its error). Run
// `go test ./passes -update` to rewrite the expected sections, then read
// their diff.
func TestGolden(t *testing.T) {
	for _, p := range goldenPasses {
		t.Run(p.dir, func(t *testing.T) {
			paths, err := filepath.Glob(filepath.Join("..", "testdata", "passes", p.dir, "*.txtar"))
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) == 0 {
				t.Fatalf("no golden cases in testdata/passes/%s", p.dir)
			}
			for _, path := range paths {
				t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
					checkGolden(t, p, path)
				})
			}
		})
	}
}

// checkGolden runs one golden case: parse and verify in.ir, run the pass,
// verify and print its output and compare it with want.ir (or its error
// with err), re-parse the output and check it prints identically, and run
// the pass again on its output (same output, or an error for a pass that
// is not idempotent).
func checkGolden(t *testing.T, p goldenPass, path string) {
	a := golden.ReadArchive(t, path)
	if len(bytes.TrimSpace(a.Comment)) == 0 {
		t.Errorf("%s: no comment saying what the case is about", path)
	}
	in, ok := golden.Section(a, "in.ir")
	if !ok {
		t.Fatalf("%s: no in.ir section", path)
	}
	g, err := ir.Parse(path+":in.ir", in)
	if err != nil {
		t.Fatalf("in.ir does not parse: %v", err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatalf("in.ir does not verify: %v", err)
	}
	if err := p.fn(g); err != nil {
		golden.CheckSection(t, path, "err", []byte(err.Error()+"\n"), "want.ir")
		return
	}
	if err := ir.Verify(g); err != nil {
		t.Errorf("the output of %s does not verify: %v", p.dir, err)
	}
	got := ir.Print(g)
	golden.CheckSection(t, path, "want.ir", []byte(got), "err")

	g2, err := ir.Parse(path+":output", []byte(got))
	if err != nil {
		t.Fatalf("the printed output does not parse: %v", err)
	}
	if d := cmp.Diff(got, ir.Print(g2)); d != "" {
		t.Errorf("re-parsed output prints differently (-first +second):\n%s", d)
	}
	err = p.fn(g2)
	switch {
	case p.idempotent && err != nil:
		t.Errorf("running %s on its own output: %v", p.dir, err)
	case p.idempotent:
		if d := cmp.Diff(got, ir.Print(g2)); d != "" {
			t.Errorf("%s is not idempotent (-once +twice):\n%s", p.dir, d)
		}
	case err == nil:
		t.Errorf("running %s on its own output succeeded; want an error", p.dir)
	}
}
