package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// TestMain lets the test binary stand in for the resnetc binary, so exit
// statuses and crashes are observed exactly as a user would see them.
func TestMain(m *testing.M) {
	if os.Getenv("RESNETC_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// resnetc runs the command in a child process and returns its stdout,
// stderr and exit status.
func resnetc(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "RESNETC_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		status = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errb.String(), status
}

// runIn runs the command in-process.
func runIn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(args, &out, &errb)
	return out.String(), err
}

func describeJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out, err := runIn(t, append([]string{"describe", "-json"}, args...)...)
	if err != nil {
		t.Fatalf("describe %v: %v", args, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("describe %v: output is not JSON: %v\n%s", args, err, out)
	}
	for _, k := range []string{"weights", "bn_params", "macs", "activation_bytes"} {
		v, ok := m[k].(float64)
		if !ok || v != math.Trunc(v) || v <= 0 {
			t.Errorf("describe %v: field %q = %v, want a positive integer", args, k, m[k])
		}
	}
	return m
}

// TestDescribeMatchesPaper checks the parameter counts the paper reports
// (rounded to 0.1M).
func TestDescribeMatchesPaper(t *testing.T) {
	for _, c := range []struct {
		preset   string
		millions float64
	}{
		{"resnet-110", 1.7},
		{"preact-resnet-110", 1.7},
		{"resnet-164", 1.7},
		{"preact-resnet-164", 1.7},
		{"resnet-1001", 10.2},
		{"preact-resnet-1001", 10.2},
	} {
		m := describeJSON(t, "-preset", c.preset)
		got := math.Round(m["weights"].(float64)/1e5) / 10
		if got != c.millions {
			t.Errorf("%s: %v weights = %.1fM, paper says %.1fM", c.preset, m["weights"], got, c.millions)
		}
	}
	// The 19.4M quoted for ResNet-1202 (from the original ResNet paper)
	// counts BatchNorm's scales and shifts too; the conv and FC weights
	// alone are 19.3M.
	m := describeJSON(t, "-preset", "resnet-1202")
	w, bn := m["weights"].(float64), m["bn_params"].(float64)
	if got := math.Round(w/1e5) / 10; got != 19.3 {
		t.Errorf("resnet-1202: %.1fM weights, want 19.3M", got)
	}
	if got := math.Round((w+bn)/1e5) / 10; got != 19.4 {
		t.Errorf("resnet-1202: %.1fM weights and BN parameters, the paper says 19.4M", got)
	}
}

func TestDescribeDepthAndBatch(t *testing.T) {
	a := describeJSON(t, "-preset", "preact-resnet-bottleneck", "-depth", "164")
	b := describeJSON(t, "-preset", "preact-resnet-164")
	if a["weights"] != b["weights"] || a["macs"] != b["macs"] {
		t.Errorf("family at depth 164 = %v weights %v MACs; preact-resnet-164 = %v, %v", a["weights"], a["macs"], b["weights"], b["macs"])
	}
	c := describeJSON(t, "-preset", "preact-resnet-bottleneck", "-depth", "272")
	if c["weights"].(float64) <= a["weights"].(float64) {
		t.Errorf("depth 272 has %v weights, not more than depth 164's %v", c["weights"], a["weights"])
	}
	// Per-image figures do not depend on the batch size.
	d := describeJSON(t, "-preset", "preact-resnet-164", "-batch", "8")
	if d["macs"] != b["macs"] || d["activation_bytes"] != b["activation_bytes"] {
		t.Errorf("batch 8 per-image figures %v, %v differ from batch 1's %v, %v", d["macs"], d["activation_bytes"], b["macs"], b["activation_bytes"])
	}
	out, err := runIn(t, "describe", "-preset", "resnet-110")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1.7") {
		t.Errorf("describe table does not show 1.7M weights:\n%s", out)
	}
}

// TestBadInputs runs the real command on malformed files and flags: each
// gives a one-line error that says where, a non-zero status, and no panic.
func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "resnet r {\n  input 32x32x3\n  classes 10\n  depth 20\n  stem conv3x3 16\n  unit basic\n  stages 16 32/2 64/2\n}\n"
	files := []struct {
		name, src, pos, msg string
	}{
		{"kind.arch", strings.Replace(good, "unit basic", "unit bottlenek", 1), ":6:8:", "bottlenek"},
		{"brace.arch", strings.TrimSuffix(good, "}\n"), ":8:1:", "}"},
		{"width.arch", strings.Replace(good, "stages 16", "stages -16", 1), ":7:10:", "-16"},
		{"depth.arch", strings.Replace(good, "depth 20", "depth 21", 1), ":4:", "6n+2"},
		{"bdepth.arch", strings.Replace(strings.Replace(strings.Replace(good, "unit basic", "unit bottleneck", 1), "stages 16 32/2 64/2", "stages 64 128/2 256/2", 1), "depth 20", "depth 57", 1), ":4:", "9n+2"},
	}
	for _, f := range files {
		p := write(f.name, f.src)
		stdout, stderr, status := resnetc(t, "describe", p)
		if status == 0 {
			t.Errorf("%s: exit status 0, want non-zero; stdout:\n%s", f.name, stdout)
		}
		msg := strings.TrimRight(stderr, "\n")
		if strings.Contains(msg, "\n") || strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine") {
			t.Errorf("%s: error is not one line:\n%s", f.name, stderr)
		}
		if !strings.HasPrefix(msg, p+f.pos) || !strings.Contains(msg, f.msg) {
			t.Errorf("%s: error %q, want prefix %q and %q in it", f.name, msg, p+f.pos, f.msg)
		}
	}

	for _, args := range [][]string{
		{"describe"},
		{"describe", "-preset", "no-such-net"},
		{"describe", "-preset", "resnet-20", filepath.Join(dir, "kind.arch")},
		{"describe", "-preset", "resnet-20", "-depth", "21"},
		{"describe", "-preset", "resnet-20", "-batch", "0"},
		{"describe", "-preset", "resnet-20", "-bogus"},
		{"describe", filepath.Join(dir, "missing.arch")},
		{"dump", "-preset", "resnet-20", "-mode", "bogus"},
		{"dump", "-preset", "resnet-20", "-after", "nosuchpass"},
		{"plan", "-preset", "resnet-20", "-budget", "lots"},
		{"plan", "-preset", "resnet-20", "-budget", "-1GiB"},
		{"plan", "-preset", "resnet-20", "-budget", "0"},
		{"plan", "-preset", "resnet-20", "-budget", "1KiB"},
		{"plan", "-preset", "resnet-20", "-budget", "1GiB", "-mode", "infer"},
		{"frobnicate"},
		{},
	} {
		_, stderr, status := resnetc(t, args...)
		if status == 0 || stderr == "" || strings.Contains(stderr, "goroutine ") {
			t.Errorf("resnetc %q: status %d, stderr %q; want a non-zero status and a message", args, status, stderr)
		}
	}
}

func TestPresetsCommand(t *testing.T) {
	out, err := runIn(t, "presets")
	if err != nil {
		t.Fatal(err)
	}
	ps := resnet.Presets()
	if len(ps) < 40 {
		t.Errorf("only %d presets", len(ps))
	}
	for _, p := range ps {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(p.Name) + `\s`).MatchString(out) {
			t.Errorf("resnetc presets does not list %s", p.Name)
		}
	}
}

// TestShowRoundTrip checks that show prints DSL that parses to the same
// architecture.
func TestShowRoundTrip(t *testing.T) {
	for _, name := range []string{"preact-resnet-164", "resnet-110-gate-neg6", "preact-resnet-200"} {
		out, err := runIn(t, "show", "-preset", name)
		if err != nil {
			t.Fatal(err)
		}
		a, err := resnet.Parse("show.arch", []byte(out))
		if err != nil {
			t.Fatalf("show -preset %s: output does not parse: %v\n%s", name, err, out)
		}
		if a.Format() != out {
			t.Errorf("show -preset %s: formatting the parsed output differs:\n%s\nvs\n%s", name, a.Format(), out)
		}
	}
}

// TestDump checks that dump prints IR that parses and verifies, in both
// modes, and that -after lower stops before the passes.
func TestDump(t *testing.T) {
	for _, c := range []struct {
		args     []string
		mode     ir.Mode
		wantKind ir.OpKind
		noKind   ir.OpKind
	}{
		{[]string{"-mode", "infer"}, ir.Infer, ir.BNFold, ir.BNNorm},
		{[]string{"-mode", "train"}, ir.Train, ir.SGD, ""},
		{[]string{"-mode", "train", "-after", "lower"}, ir.Train, ir.BNStats, ir.SGD},
	} {
		args := append([]string{"dump", "-preset", "resnet-20", "-batch", "2"}, c.args...)
		out, err := runIn(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		g, err := ir.Parse("dump.ir", []byte(out))
		if err != nil {
			t.Fatalf("%v: output does not parse: %v", args, err)
		}
		if err := ir.Verify(g); err != nil {
			t.Fatalf("%v: output does not verify: %v", args, err)
		}
		if g.Mode != c.mode {
			t.Errorf("%v: mode %v, want %v", args, g.Mode, c.mode)
		}
		has := map[ir.OpKind]bool{}
		for _, op := range g.Ops {
			has[op.Kind] = true
		}
		if !has[c.wantKind] {
			t.Errorf("%v: no %s op", args, c.wantKind)
		}
		if c.noKind != "" && has[c.noKind] {
			t.Errorf("%v: unexpected %s op", args, c.noKind)
		}
	}
}

// TestREADME checks that the README's DSL examples parse, that it names
// every preset, and that its first command works.
func TestREADME(t *testing.T) {
	src, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(src)
	blocks := regexp.MustCompile("(?s)```arch\n(.*?)```").FindAllStringSubmatch(readme, -1)
	if len(blocks) < 4 {
		t.Fatalf("README has %d arch examples, want at least 4", len(blocks))
	}
	for i, b := range blocks {
		if _, err := resnet.Parse("README.md", []byte(b[1])); err != nil {
			t.Errorf("README example %d does not parse: %v\n%s", i+1, err, b[1])
		}
	}
	for _, p := range resnet.Presets() {
		if !strings.Contains(readme, "`"+p.Name+"`") {
			t.Errorf("README does not list preset %s", p.Name)
		}
	}
	const main = "go generate ./gen/preact-resnet-20 && go run ./gen/preact-resnet-20/trainer train"
	if !strings.Contains(readme, main) {
		t.Fatalf("README's main command %q is missing", main)
	}
	if !strings.Contains(readme, "go test ./...") {
		t.Fatalf("README names no test command")
	}
	m := describeJSON(t, "-preset", "preact-resnet-1001")
	if got := math.Round(m["weights"].(float64)/1e5) / 10; got != 10.2 {
		t.Errorf("preact-resnet-1001: %.1fM weights, README says 10.2M", got)
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"2GiB", 2 << 30}, {"2gib", 2 << 30}, {"2G", 2 << 30}, {"1.5GiB", 3 << 29}, {"500MB", 500e6},
		{"4096", 4096}, {"4096B", 4096}, {"2 GiB", 2 << 30}, {"1KB", 1000}, {"1K", 1024}, {"3TiB", 3 << 40},
	} {
		if got, err := parseSize(c.in); err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "GiB", "lots", "-1", "1.5", "NaN", "Inf", "1e30GiB", "2 GiBs", "0x10"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestPlan checks the plan command's JSON figures against each other and
// against a budget: the arena and the naive figure are at least the lower
// bound, recomputation fits the budget at a stated cost, and fusion
// saves memory.
func TestPlan(t *testing.T) {
	plan := func(args ...string) map[string]float64 {
		t.Helper()
		out, err := runIn(t, append([]string{"plan", "-preset", "preact-resnet-20", "-batch", "16", "-json"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		f := map[string]float64{}
		for k, v := range m {
			if x, ok := v.(float64); ok {
				f[k] = x
			}
		}
		for _, k := range []string{"arena_bytes", "state_bytes", "naive_bytes", "lower_bound_bytes"} {
			if f[k] <= 0 || f[k] != math.Trunc(f[k]) {
				t.Errorf("%s = %v, want a positive integer", k, m[k])
			}
		}
		if _, ok := m["extra_flops_percent"].(float64); !ok {
			t.Errorf("extra_flops_percent = %v, want a number", m["extra_flops_percent"])
		}
		// Naive is the peak of live bytes without in-place sharing, so
		// the lower bound (with sharing) is below it and below the arena.
		if f["lower_bound_bytes"] > f["arena_bytes"] || f["lower_bound_bytes"] > f["naive_bytes"] {
			t.Errorf("lower bound %v, arena %v, naive %v: want the lower bound below both", f["lower_bound_bytes"], f["arena_bytes"], f["naive_bytes"])
		}
		return f
	}
	full := plan()
	if full["extra_flops_percent"] != 0 || full["ops_cloned"] != 0 {
		t.Errorf("no budget: %v%% extra FLOPs, %v ops cloned; want none", full["extra_flops_percent"], full["ops_cloned"])
	}
	if full["unfused_naive_bytes"] <= full["naive_bytes"] {
		t.Errorf("unfused naive %v <= fused naive %v", full["unfused_naive_bytes"], full["naive_bytes"])
	}
	// About three quarters of the full arena needs recomputation.
	budget := int64(full["arena_bytes"]) * 3 / 4
	tight := plan("-budget", strconv.FormatInt(budget, 10))
	if tight["arena_bytes"] > float64(budget) || tight["extra_flops_percent"] <= 0 || tight["ops_cloned"] <= 0 {
		t.Errorf("budget %d: arena %v, %v%% extra FLOPs, %v ops cloned", budget, tight["arena_bytes"], tight["extra_flops_percent"], tight["ops_cloned"])
	}
	if tight["no_remat_arena_bytes"] != full["arena_bytes"] || tight["state_bytes"] != full["state_bytes"] {
		t.Errorf("budget %d: no-recomputation arena %v, state %v; want %v and %v as without a budget",
			budget, tight["no_remat_arena_bytes"], tight["state_bytes"], full["arena_bytes"], full["state_bytes"])
	}

	out, err := runIn(t, "plan", "-preset", "preact-resnet-20", "-batch", "16", "-budget", strconv.FormatInt(budget, 10))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"arena ", "lower bound ", "naive ", "state ", "stored for the backward pass:",
		"\n  s1.u1", // a row of the stored table, alone or the first of a run of units
		"rematerialization to a budget of", "recomputed ", "extra FLOPs ", "no recomputation ", "no fusion "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestCompileWinograd compiles preact-resnet-20 with and without
// -winograd: by default its inference and training step run Winograd
// kernels (their Go and the drivers' winograd3x3), with -winograd=false
// none.
func TestCompileWinograd(t *testing.T) {
	for _, c := range []struct {
		flag string
		want bool
	}{{"-winograd=true", true}, {"-winograd=false", false}} {
		dir := t.TempDir()
		if _, err := runIn(t, "compile", "-preset", "preact-resnet-20", "-batch", "4", c.flag, "-import-path", "example.com/net", "-o", dir); err != nil {
			t.Fatalf("%s: %v", c.flag, err)
		}
		_, err := os.Stat(filepath.Join(dir, "kernels_winograd.go"))
		if got := err == nil; got != c.want {
			t.Errorf("%s: kernels_winograd.go written %v, want %v", c.flag, got, c.want)
		}
		// Infer runs them inside its units (unitFwd), one image at a
		// time, the training step over the batch.
		for f, call := range map[string]string{"infer.go": "Winograd3x3N1C16K16H32W32", "train.go": "m.winograd3x3(Winograd3x3N4C16K16H32W32"} {
			src, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(src), call); got != c.want {
				t.Errorf("%s: %s names %s: %v, want %v", c.flag, f, call, got, c.want)
			}
		}
	}
}
