package deps

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
)

const module = "github.com/resnetc/resnetc"

// rule says what the non-test files of the packages under dir may import
// beyond the standard library. Rules are matched longest dir first.
type rule struct {
	dir   string
	may   []string // import path prefixes allowed (module paths relative to the module root start with "/")
	why   string
	tests []string // extra prefixes allowed in _test.go files
}

var testLibs = []string{"/internal/golden", "github.com/google/go-cmp/", "golang.org/x/tools/txtar"}

var policy = []rule{
	{dir: "ir", may: []string{"/ir"},
		why: "ir is the compiler's core and imports only the standard library (and its own subpackages)"},
	{dir: "passes", may: []string{"/ir", "/passes"},
		why: "passes transform ir graphs and import only ir"},
	{dir: "codegen", may: []string{"/ir", "/passes", "/codegen", "github.com/dave/jennifer/", "github.com/mmcloughlin/avo/", "golang.org/x/"},
		why: "codegen imports ir, passes, jennifer and avo"},
	{dir: "runtime", may: []string{"/runtime", "golang.org/x/", "github.com/", "gonum.org/v1/plot"},
		why: "runtime is what generated packages share: it must never pull in the compiler (ir, passes, codegen) or avo"},
	{dir: "gen", may: []string{"/runtime", "/gen", "golang.org/x/sys/"},
		why: "generated packages import only runtime and the standard library"},
	{dir: "internal/golden", may: []string{"github.com/google/go-cmp/", "golang.org/x/tools/txtar"},
		why: "golden is a test helper"},
	{dir: "internal/deps", may: nil, why: "deps only tests"},
	{dir: "cmd", may: []string{"/"}, why: "commands may import the whole module"},
}

// forbidden are never allowed under a dir, whatever the prefixes say.
var forbidden = map[string][]string{
	"runtime": {"/ir", "/passes", "/codegen", "github.com/mmcloughlin/avo", "github.com/dave/jennifer"},
}

func TestImportPolicy(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			base := d.Name()
			if rel != "." && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") || base == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := path.Dir(rel)
		r := ruleFor(dir)
		if r == nil {
			t.Errorf("%s: no import rule covers directory %s; add one to the policy", rel, dir)
			return nil
		}
		isTest := strings.HasSuffix(p, "_test.go")
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			checked++
			if msg := check(r, dir, ip, isTest); msg != "" {
				t.Errorf("%s imports %q: %s", rel, ip, msg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("checked only %d imports; is the module root right (%s)?", checked, root)
	}
}

func TestRuleExamples(t *testing.T) {
	for _, c := range []struct {
		dir, imp string
		test, ok bool
	}{
		{"ir", "fmt", false, true},
		{"ir", module + "/passes", false, false},
		{"ir/resnet", module + "/ir", false, true},
		{"ir", "github.com/google/go-cmp/cmp", false, false},
		{"ir", "github.com/google/go-cmp/cmp", true, true},
		{"passes", module + "/codegen", false, false},
		{"runtime", module + "/ir", false, false},
		{"runtime/data", "github.com/mmcloughlin/avo/build", false, false},
		{"runtime", "golang.org/x/sys/cpu", false, true},
		{"gen/preact20", module + "/runtime", false, true},
		{"gen/preact20", module + "/ir", false, false},
	} {
		r := ruleFor(c.dir)
		if r == nil {
			t.Errorf("no rule for %s", c.dir)
			continue
		}
		if got := check(r, c.dir, c.imp, c.test) == ""; got != c.ok {
			t.Errorf("%s importing %s (test=%v): allowed=%v, want %v", c.dir, c.imp, c.test, got, c.ok)
		}
	}
}

func ruleFor(dir string) *rule {
	rules := append([]rule(nil), policy...)
	sort.Slice(rules, func(i, j int) bool { return len(rules[i].dir) > len(rules[j].dir) })
	for i, r := range rules {
		if dir == r.dir || strings.HasPrefix(dir, r.dir+"/") {
			return &rules[i]
		}
	}
	return nil
}

// check returns "" when dir may import ip, else the reason it may not.
func check(r *rule, dir, ip string, isTest bool) string {
	top := strings.SplitN(dir, "/", 2)[0]
	for _, f := range forbidden[top] {
		if matches(ip, f) {
			return r.why
		}
	}
	if !strings.Contains(strings.SplitN(ip, "/", 2)[0], ".") {
		return "" // standard library
	}
	allowed := r.may
	if isTest {
		allowed = append(append([]string(nil), allowed...), testLibs...)
		allowed = append(allowed, "/"+top)
	}
	for _, a := range allowed {
		if matches(ip, a) {
			return ""
		}
	}
	return r.why
}

// matches reports whether import path ip falls under prefix p (a module
// relative path when p starts with "/").
func matches(ip, p string) bool {
	if strings.HasPrefix(p, "/") {
		if p == "/" {
			return strings.HasPrefix(ip, module+"/")
		}
		full := module + p
		return ip == full || strings.HasPrefix(ip, full+"/")
	}
	if strings.HasSuffix(p, "/") {
		return strings.HasPrefix(ip, p) || ip == strings.TrimSuffix(p, "/")
	}
	return ip == p || strings.HasPrefix(ip, p+"/")
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}
