package passes

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"
)

// TestPipelineGolden runs the whole pipeline on the small networks of
// testdata/passes/pipeline, one per unit kind and activation order (basic
// and bottleneck, original and full pre-activation), in both modes, and
// compares the graph after lowering and after every pass with the
// archive's sections "<mode>/<pass>.ir" (a pass that leaves the graph as
// it was has the section "unchanged"). The remat pass runs with the
// tightest budget it can meet, so that it recomputes something. Run
// `go test ./passes -run PipelineGolden -update` to rewrite them.
func TestPipelineGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "passes", "pipeline", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 4 {
		t.Fatalf("%d pipeline cases, want one per unit kind and order", len(paths))
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			a := golden.ReadArchive(t, path)
			src, ok := golden.Section(a, "net.arch")
			if !ok {
				t.Fatalf("%s: no net.arch section", path)
			}
			arch, err := resnet.Parse(path+":net.arch", src)
			if err != nil {
				t.Fatal(err)
			}
			for _, mode := range []ir.Mode{ir.Infer, ir.Train} {
				g, err := resnet.Lower(arch, 2, mode)
				if err != nil {
					t.Fatal(err)
				}
				golden.CheckSection(t, path, mode.String()+"/lower.ir", []byte(ir.Print(g)))
				for _, p := range Passes() {
					if !containsMode(p.Modes, mode) {
						continue
					}
					c := &Context{}
					if p.Name == "remat" {
						_, err := Rematerialize(g.Clone(), 1)
						var be *BudgetError
						if !errors.As(err, &be) {
							t.Fatalf("remat with a 1-byte budget: %v, want a *BudgetError", err)
						}
						c.Budget = be.MinArena
					}
					before := ir.Print(g)
					if err := p.Fn(g, c); err != nil {
						t.Fatalf("%s %s: %v", mode, p.Name, err)
					}
					if err := ir.Verify(g); err != nil {
						t.Fatalf("%s: graph does not verify after %s: %v", mode, p.Name, err)
					}
					got := ir.Print(g)
					if got == before {
						got = "unchanged\n"
					}
					golden.CheckSection(t, path, mode.String()+"/"+p.Name+".ir", []byte(got))
				}
			}
		})
	}
}

func containsMode(modes []ir.Mode, m ir.Mode) bool {
	for _, x := range modes {
		if x == m {
			return true
		}
	}
	return false
}
