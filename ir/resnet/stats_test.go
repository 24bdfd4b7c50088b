package resnet

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// cifarNet is a CIFAR network of the paper's shape, built in Go: input
// 32x32x3, stem conv3x3 16, three stages of n units at 32x32, 16x16, 8x8.
// Widths are the stage output widths (16, 32, 64 for basic and 1-layer
// units; 64, 128, 256 for bottlenecks).
func cifarNet(kind UnitKind, order Order, sc Shortcut, grow Grow, n, classes int) *Arch {
	widths := []int{16, 32, 64}
	if kind == Bottleneck {
		widths = []int{64, 128, 256}
	}
	a := &Arch{
		Name:   fmt.Sprintf("%v-%v-%d", kind, order, kind.LayersPerUnit()*3*n+2),
		InputH: 32, InputW: 32, InputC: 3, Classes: classes,
		Depth: kind.LayersPerUnit()*3*n + 2,
		Stem:  Stem{Kernel: 3, Stride: 1, Width: 16},
		Unit:  kind, Order: order, Shortcut: sc, Grow: grow,
		BNEps: 1e-5, BNMomentum: 0.1,
	}
	for i, w := range widths {
		a.Stages = append(a.Stages, Stage{Units: n, Width: w, Stride: min(i+1, 2)})
	}
	return a
}

// closedForm counts, from the architecture's description alone (no graph),
// what Describe should find: the weights of every conv and of the FC
// layer, the BatchNorm scale and shift of every BN, and the forward
// multiply-accumulates per image, conv by conv:
//
//	conv KxK from Cin to Cout at HoxWo: K*K*Cin*Cout weights, Ho*Wo*Cout*Cin*K*K MACs
//	basic unit:      3x3 (cin->w), 3x3 (w->w)
//	1-layer unit:    3x3 (cin->w)
//	bottleneck unit: 1x1 (cin->w/4), 3x3 (w/4->w/4), 1x1 (w/4->w)
//	projection:      1x1 (cin->w), where the unit grows (grow=projection) or everywhere (conv1x1)
//	gate:            1x1 (cin->w) plus w biases
//	head:            FC C*classes + classes
//
// BatchNorms sit after each conv (original, relu-before-add,
// relu-only-preact; bn-after-add: not after the last, but after the add),
// after a projection in orders a-c, or before each conv on its input
// (full-preact, where the stem has none and the head has one).
func closedForm(a *Arch) (weights, bn, macs int64) {
	h, w := a.InputH/a.Stem.Stride, a.InputW/a.Stem.Stride
	conv := func(k, cin, cout int) {
		weights += int64(k * k * cin * cout)
		macs += int64(h * w * cout * cin * k * k)
	}
	bnOn := func(c int) { bn += int64(2 * c) }
	conv(a.Stem.Kernel, a.InputC, a.Stem.Width)
	if a.Order != FullPreact || a.Stem.MaxPool {
		bnOn(a.Stem.Width)
	}
	if a.Stem.MaxPool {
		h, w = h/2, w/2
	}
	cin := a.Stem.Width
	first := true
	for _, st := range a.Stages {
		for u := range st.Units {
			wd := st.Width
			if u == 0 {
				h, w = h/st.Stride, w/st.Stride
			}
			grows := cin != wd || u == 0 && st.Stride != 1
			var ins, outs []int
			switch a.Unit {
			case Basic:
				ins, outs = []int{cin, wd}, []int{wd, wd}
				conv(3, cin, wd)
				conv(3, wd, wd)
			case OneLayer:
				ins, outs = []int{cin}, []int{wd}
				conv(3, cin, wd)
			case Bottleneck:
				m := wd / 4
				ins, outs = []int{cin, m, m}, []int{m, m, wd}
				conv(1, cin, m)
				conv(3, m, m)
				conv(1, m, wd)
			}
			proj := a.Shortcut.Kind == Conv1x1 || grows && a.Grow == GrowB
			if proj {
				conv(1, cin, wd)
			}
			if a.Shortcut.Kind == Gate || a.Shortcut.Kind == ShortcutGate {
				conv(1, cin, wd)
				weights += int64(wd)
			}
			switch a.Order {
			case Original, ReLUBeforeAdd, ReLUOnlyPreact:
				for _, c := range outs {
					bnOn(c)
				}
			case BNAfterAdd:
				for _, c := range outs[:len(outs)-1] {
					bnOn(c)
				}
				bnOn(wd)
			case FullPreact:
				for i, c := range ins {
					if i > 0 || !(first && a.Stem.MaxPool) {
						bnOn(c)
					}
				}
			}
			if proj && !a.Order.Preact() {
				bnOn(wd)
			}
			cin, first = wd, false
		}
	}
	if a.Order == FullPreact {
		bnOn(cin)
	}
	weights += int64(cin*a.Classes + a.Classes)
	macs += int64(cin * a.Classes)
	return weights, bn, macs
}

// TestDescribeClosedForm compares Describe with closedForm on every
// unit kind, order, shortcut and grow, at the CIFAR shape.
func TestDescribeClosedForm(t *testing.T) {
	for _, kind := range allKinds {
		for _, order := range allOrders {
			for _, sc := range allShortcuts {
				for _, grow := range allGrows {
					a := cifarNet(kind, order, sc, grow, 2, 10)
					for _, a := range []*Arch{a, withImageNetStem(a)} {
						s, err := Describe(a, 1)
						if err != nil {
							t.Fatalf("%s: %v", a.Name, err)
						}
						w, bn, macs := closedForm(a)
						if s.Weights != w || s.BNParams != bn || s.MACs != macs {
							t.Errorf("%s %v %v: weights %d, BN params %d, MACs %d; closed form %d, %d, %d",
								a.Name, sc, grow, s.Weights, s.BNParams, s.MACs, w, bn, macs)
						}
						if s.BNStateFloats != s.BNParams {
							t.Errorf("%s: %d BN state floats, %d BN params; want equal (two per channel each)", a.Name, s.BNStateFloats, s.BNParams)
						}
						checkRowsSum(t, s)
					}
				}
			}
		}
	}
}

// withImageNetStem gives a a conv7x7/2 stem with a max pool on a 64x64
// input, so every resolution is a power of two.
func withImageNetStem(a *Arch) *Arch {
	b := *a
	b.Name += "-imagenet-stem"
	b.InputH, b.InputW = 64, 64
	b.Stem = Stem{Kernel: 7, Stride: 2, Width: 16, MaxPool: true}
	return &b
}

func checkRowsSum(t *testing.T, s *Stats) {
	t.Helper()
	var w, bn, macs, act int64
	for _, r := range s.Stages {
		w += r.Weights
		bn += r.BNParams
		macs += r.MACs
		act += r.ActivationBytes
	}
	if w != s.Weights || bn != s.BNParams || macs != s.MACs || act != s.ActivationBytes {
		t.Errorf("%s: rows sum to %d weights, %d BN params, %d MACs, %d bytes; totals are %d, %d, %d, %d",
			s.Name, w, bn, macs, act, s.Weights, s.BNParams, s.MACs, s.ActivationBytes)
	}
}

// TestDescribePaper checks the paper's parameter counts (rounded to 0.1M)
// and ResNet-110's compute, which the paper's nets make easy to count by
// hand.
func TestDescribePaper(t *testing.T) {
	id := Shortcut{Kind: Identity}
	for _, c := range []struct {
		arch     *Arch
		millions float64
	}{
		{cifarNet(Basic, Original, id, GrowA, 18, 10), 1.7},      // ResNet-110
		{cifarNet(Basic, FullPreact, id, GrowA, 18, 10), 1.7},    // pre-act ResNet-110
		{cifarNet(Bottleneck, Original, id, GrowB, 18, 10), 1.7}, // ResNet-164
		{cifarNet(Bottleneck, FullPreact, id, GrowB, 18, 10), 1.7},
		{cifarNet(Bottleneck, FullPreact, id, GrowB, 111, 10), 10.2}, // ResNet-1001
		{cifarNet(Bottleneck, Original, id, GrowB, 111, 10), 10.2},
	} {
		s, err := Describe(c.arch, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := math.Round(float64(s.Weights)/1e5) / 10; got != c.millions {
			t.Errorf("%s: %d weights = %.1fM, the paper says %.1fM", c.arch.Name, s.Weights, got, c.millions)
		}
	}

	// ResNet-1202: the original ResNet paper's 19.4M also counts the
	// BatchNorm scales and shifts (19,421,274); its convs and FC alone are
	// 19.3M. (Counting BatchNorm would make ResNet-1001 10.3M, not the
	// 10.2M this paper reports.)
	s, err := Describe(cifarNet(Basic, Original, id, GrowA, 200, 10), 1)
	if err != nil {
		t.Fatal(err)
	}
	if w, all := math.Round(float64(s.Weights)/1e5)/10, math.Round(float64(s.Weights+s.BNParams)/1e5)/10; w != 19.3 || all != 19.4 {
		t.Errorf("ResNet-1202: %d weights = %.1fM, with BatchNorm %d = %.1fM; want 19.3M and 19.4M", s.Weights, w, s.Weights+s.BNParams, all)
	}

	// ResNet-110 by hand. Three stages of 18 basic units, widths 16, 32,
	// 64 at 32x32, 16x16, 8x8; the first unit of stages 2 and 3 reads half
	// the width; option A has no weights.
	const n = 18
	wantW := 3*3*3*16 + // stem
		n*2*(9*16*16) + // stage 1
		(9*16*32 + 9*32*32) + (n-1)*2*(9*32*32) + // stage 2
		(9*32*64 + 9*64*64) + (n-1)*2*(9*64*64) + // stage 3
		64*10 + 10 // FC
	wantBN := 2 * (16 + n*2*(16+32+64)) // stem BN and two per unit
	wantMACs := 32*32*16*(3*9) +        // stem
		n*2*(32*32*16*(16*9)) + // stage 1
		16*16*32*(16*9) + (2*n-1)*(16*16*32*(32*9)) + // stage 2
		8*8*64*(32*9) + (2*n-1)*(8*8*64*(64*9)) + // stage 3
		64*10 // FC
	s, err = Describe(cifarNet(Basic, Original, id, GrowA, n, 10), 1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Weights != int64(wantW) || s.BNParams != int64(wantBN) || s.MACs != int64(wantMACs) {
		t.Errorf("ResNet-110: %d weights, %d BN params, %d MACs; want %d, %d, %d", s.Weights, s.BNParams, s.MACs, wantW, wantBN, wantMACs)
	}
	// 1,727,962 is ResNet-110's count with BatchNorm's scales and shifts;
	// the paper's 1.7M holds either way.
	if s.Weights+s.BNParams != 1727962 {
		t.Errorf("ResNet-110: %d weights and BN parameters, want 1,727,962", s.Weights+s.BNParams)
	}
	if got := math.Round(float64(s.MACs) / 1e6); got != 253 {
		t.Errorf("ResNet-110: %d MACs per image = %vM, want about 253M", s.MACs, got)
	}
	if s.Depth != 110 || s.Batch != 1 || s.Name != "basic-original-110" {
		t.Errorf("ResNet-110: name %q, depth %d, batch %d", s.Name, s.Depth, s.Batch)
	}
	want := []StageStats{
		{Name: "stem", OutH: 32, OutW: 32, Width: 16},
		{Name: "s1", Units: n, OutH: 32, OutW: 32, Width: 16},
		{Name: "s2", Units: n, OutH: 16, OutW: 16, Width: 32},
		{Name: "s3", Units: n, OutH: 8, OutW: 8, Width: 64},
		{Name: "head", OutH: 1, OutW: 1, Width: 10},
	}
	if len(s.Stages) != len(want) {
		t.Fatalf("ResNet-110: %d rows, want %d", len(s.Stages), len(want))
	}
	for i, w := range want {
		r := s.Stages[i]
		if r.Name != w.Name || r.Units != w.Units || r.OutH != w.OutH || r.OutW != w.OutW || r.Width != w.Width {
			t.Errorf("ResNet-110 row %d: %+v, want %+v", i, r, w)
		}
	}
	if s.Stages[0].Weights != 432 || s.Stages[4].Weights != 650 || s.Stages[4].MACs != 640 {
		t.Errorf("ResNet-110: stem %d weights, head %d weights and %d MACs; want 432, 650, 640",
			s.Stages[0].Weights, s.Stages[4].Weights, s.Stages[4].MACs)
	}
}

// TestDescribeActivations counts activation bytes by hand for a small
// original net with option A, and checks they are per image.
func TestDescribeActivations(t *testing.T) {
	a := cifarNet(Basic, Original, Shortcut{Kind: Identity}, GrowA, 2, 10)
	// Per image, float32. Stem: conv, bn, relu. Each unit: conv1, bn1,
	// relu1, conv2, bn2, add, relu at its output size, and the option A
	// shortcut at the first unit of stages 2 and 3. Head: gap, fc.
	e := func(c, h int) int64 { return int64(4 * c * h * h) }
	want := 3*e(16, 32) +
		2*7*e(16, 32) +
		(2*7+1)*e(32, 16) +
		(2*7+1)*e(64, 8) +
		4*(64+10)
	_, _, macs := closedForm(a)
	for _, batch := range []int{1, 3} {
		s, err := Describe(a, batch)
		if err != nil {
			t.Fatal(err)
		}
		if s.MACs != macs {
			t.Errorf("batch %d: %d MACs per image, want %d", batch, s.MACs, macs)
		}
		if s.ActivationBytes != want {
			t.Errorf("batch %d: %d activation bytes per image, want %d", batch, s.ActivationBytes, want)
		}
		if r := s.Stages[0]; r.ActivationBytes != 3*e(16, 32) {
			t.Errorf("batch %d: stem %d bytes, want %d", batch, r.ActivationBytes, 3*e(16, 32))
		}
		if s.Batch != batch {
			t.Errorf("batch %d: Stats.Batch %d", batch, s.Batch)
		}
	}

	if _, err := Describe(a, 0); err == nil {
		t.Errorf("Describe at batch 0 gave no error")
	}
}

// TestDescribeJSON checks the field names the command line's -json
// output promises.
func TestDescribeJSON(t *testing.T) {
	s, err := Describe(cifarNet(Bottleneck, FullPreact, Shortcut{Kind: Identity}, GrowB, 1, 10), 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{
		"weights": float64(s.Weights), "bn_params": float64(s.BNParams), "bn_state": float64(s.BNStateFloats),
		"macs": float64(s.MACs), "activation_bytes": float64(s.ActivationBytes), "depth": 11, "batch": 2,
	} {
		if m[k] != want || want <= 0 {
			t.Errorf("JSON %s = %v, want %v", k, m[k], want)
		}
	}
	rows, ok := m["stages"].([]any)
	if m["name"] != s.Name || !ok || len(rows) != 5 {
		t.Fatalf("JSON name %v, stages %v", m["name"], m["stages"])
	}
	row := rows[1].(map[string]any)
	for _, k := range []string{"name", "units", "out_h", "out_w", "width", "weights", "bn_params", "macs", "activation_bytes"} {
		if _, ok := row[k]; !ok {
			t.Errorf("JSON stage row has no %q: %v", k, row)
		}
	}
}

// TestWriteTable checks the table's rows and totals.
func TestWriteTable(t *testing.T) {
	a := cifarNet(Basic, Original, Shortcut{Kind: Identity}, GrowA, 18, 10)
	s, err := Describe(a, 1)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := s.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	for i, prefix := range []string{"basic-original-110: depth 110, batch 1", "", "stage ", "stem ", "s1 ", "s2 ", "s3 ", "head ", "total "} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], prefix) {
			t.Fatalf("line %d does not start with %q:\n%s", i+1, prefix, out)
		}
	}
	for _, want := range []string{
		"1,719,866 (1.72M)", // the weights, exactly and in millions
		"252,887,680 per image (252.89M)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table does not contain %q:\n%s", want, out)
		}
	}
	// Stage 3: 18 units at 8x8x64; 9*32*64 + 9*64*64 weights in its first
	// unit, 2*9*64*64 in each other; 2*2*64 BN parameters a unit.
	s3 := fmt.Sprintf("s3 18 8x8x64 %s %s", group(9*32*64+9*64*64+17*2*9*64*64), group(18*4*64))
	total := fmt.Sprintf("total 54 %s %s %s", group(s.Weights), group(s.BNParams), group(s.MACs))
	for i, want := range map[int]string{6: s3, 8: total} {
		if got := strings.Join(strings.Fields(lines[i]), " "); !strings.HasPrefix(got, want) {
			t.Errorf("line %d is %q, want it to start with %q", i+1, lines[i], want)
		}
	}
	if strings.Contains(out, " \n") {
		t.Errorf("table has trailing spaces:\n%s", out)
	}
	// Every row's columns line up: the table is rectangular on the right.
	width := len(lines[2])
	for _, l := range lines[3:9] {
		if len(l) != width {
			t.Errorf("row %q is %d wide, header %d", l, len(l), width)
		}
	}
}

// TestGroup checks the thousands separators.
func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 123456: "123,456", 1727962: "1,727,962", -12345: "-12,345"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{1727962: "1.73M", 252887680: "252.89M", 999994999: "999.99M", 1487849984: "1.49G"} {
		if got := magnitude(n); got != want {
			t.Errorf("magnitude(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := bytesString(n); got != want {
			t.Errorf("bytesString(%d) = %q, want %q", n, got, want)
		}
	}
}
