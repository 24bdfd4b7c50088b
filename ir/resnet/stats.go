package resnet

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/resnetc/resnetc/ir"
)

// Stats are the sizes of a network: what `resnetc describe` prints. They
// are counted on the lowered inference graph, so they cannot disagree with
// what is compiled. Per-image figures do not depend on the batch size.
type Stats struct {
	Name  string `json:"name"`
	Depth int    `json:"depth"`
	Batch int    `json:"batch"`
	// Weights counts conv weights and biases and the fully-connected
	// layer's weight and bias: the paper's parameter count.
	Weights int64 `json:"weights"`
	// BNParams counts BatchNorm scales and shifts (gamma and beta).
	BNParams int64 `json:"bn_params"`
	// BNStateFloats counts BatchNorm running means and variances.
	BNStateFloats int64 `json:"bn_state"`
	// MACs counts forward multiply-accumulates per image: Ho*Wo*Cout*Cin*K*K
	// per conv and C*K for the fully-connected layer.
	MACs int64 `json:"macs"`
	// ActivationBytes is the size of every value the forward graph computes
	// (not its inputs, weights or state), per image, in float32.
	ActivationBytes int64        `json:"activation_bytes"`
	Stages          []StageStats `json:"stages"`
}

// StageStats is one row of the per-stage table: the stem, each stage
// ("s1", "s2", ...) or the head. OutH, OutW and Width are the shape of the
// row's output (1x1xclasses for the head).
type StageStats struct {
	Name            string `json:"name"`
	Units           int    `json:"units"`
	OutH            int    `json:"out_h"`
	OutW            int    `json:"out_w"`
	Width           int    `json:"width"`
	Weights         int64  `json:"weights"`
	BNParams        int64  `json:"bn_params"`
	MACs            int64  `json:"macs"`
	ActivationBytes int64  `json:"activation_bytes"`
}

// Describe lowers a for inference at the given batch size and counts its
// weights, BatchNorm parameters and state, multiply-accumulates and
// activation memory, in total and per stage.
func Describe(a *Arch, batch int) (*Stats, error) {
	g, err := Lower(a, batch, ir.Infer)
	if err != nil {
		return nil, err
	}
	s := &Stats{Name: a.Name, Depth: a.Depth, Batch: batch}
	if s.Depth == 0 {
		s.Depth = a.Unit.LayersPerUnit()*a.Units() + 2
	}
	s.Stages = append(s.Stages, StageStats{Name: "stem"})
	for i, st := range a.Stages {
		s.Stages = append(s.Stages, StageStats{Name: fmt.Sprintf("s%d", i+1), Units: st.Units})
	}
	s.Stages = append(s.Stages, StageStats{Name: "head"})
	row := map[string]*StageStats{}
	for i := range s.Stages {
		row[s.Stages[i].Name] = &s.Stages[i]
	}

	rowOf := func(op *ir.Op) *StageStats {
		prefix, _, _ := strings.Cut(op.Name, ".")
		r := row[prefix]
		if r == nil {
			panic(fmt.Sprintf("BUG: %s: the lowering names no stage %q", op, prefix))
		}
		return r
	}
	counted := map[*ir.Value]bool{}
	// count adds a declared tensor to a total and its row, once.
	count := func(v *ir.Value, total, perRow *int64) {
		if counted[v] || v.Def.Kind == ir.Input {
			return
		}
		counted[v] = true
		n := int64(v.Type.Shape.Elems())
		*total += n
		if perRow != nil {
			*perRow += n
		}
	}
	for _, op := range g.Ops {
		if op.Kind.IsDecl() {
			continue
		}
		r := rowOf(op)
		for _, v := range op.Results {
			if v.Type.Shape[0] != batch {
				panic(fmt.Sprintf("BUG: %s: result %v has no batch dimension", op, v.Type))
			}
			b := v.Type.Bytes() / int64(batch)
			s.ActivationBytes += b
			r.ActivationBytes += b
		}
		switch op.Kind {
		case ir.Conv2D:
			y, w := op.Result().Type.Shape, op.Args[1].Type.Shape
			m := int64(y[1]*y[2]*y[3]) * int64(w[1]*w[2]*w[3])
			s.MACs += m
			r.MACs += m
			for _, v := range op.Args[1:] {
				count(v, &s.Weights, &r.Weights)
			}
		case ir.Linear:
			w := op.Args[1].Type.Shape
			m := int64(w[0]) * int64(w[1])
			s.MACs += m
			r.MACs += m
			for _, v := range op.Args[1:] {
				count(v, &s.Weights, &r.Weights)
			}
		case ir.BNNorm:
			count(op.Args[1], &s.BNStateFloats, nil)
			count(op.Args[2], &s.BNStateFloats, nil)
			count(op.Args[3], &s.BNParams, &r.BNParams)
			count(op.Args[4], &s.BNParams, &r.BNParams)
		}
		// The row's output is its last op's.
		switch t := op.Results[0].Type.Shape; len(t) {
		case 4:
			r.Width, r.OutH, r.OutW = t[1], t[2], t[3]
		case 2:
			r.Width, r.OutH, r.OutW = t[1], 1, 1
		}
	}
	for _, op := range g.Ops {
		if op.Kind.IsDecl() && op.Kind != ir.Input && !counted[op.Result()] {
			panic(fmt.Sprintf("BUG: %s is neither a weight nor BatchNorm parameter or state", op))
		}
	}
	return s, nil
}

// WriteTable writes s as a text table, one row per stage, with totals.
func (s *Stats) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: depth %d, batch %d\n\n", s.Name, s.Depth, s.Batch)
	rows := [][]string{{"stage", "units", "output", "weights", "BN params", "MACs/image", "activations/image"}}
	units := 0
	for _, r := range s.Stages {
		u := "-"
		if r.Units > 0 {
			u = strconv.Itoa(r.Units)
			units += r.Units
		}
		rows = append(rows, []string{
			r.Name, u, fmt.Sprintf("%dx%dx%d", r.OutH, r.OutW, r.Width),
			group(r.Weights), group(r.BNParams), group(r.MACs), bytesString(r.ActivationBytes),
		})
	}
	rows = append(rows, []string{
		"total", strconv.Itoa(units), "",
		group(s.Weights), group(s.BNParams), group(s.MACs), bytesString(s.ActivationBytes),
	})
	writeColumns(&b, rows, 2)
	fmt.Fprintf(&b, "\nweights      %s (%s), conv and fully-connected\n", group(s.Weights), millions(s.Weights))
	fmt.Fprintf(&b, "BatchNorm    %s parameters (scale, shift), %s running statistics\n", group(s.BNParams), group(s.BNStateFloats))
	fmt.Fprintf(&b, "MACs         %s per image (%s)\n", group(s.MACs), magnitude(s.MACs))
	fmt.Fprintf(&b, "activations  %s per image, %s at batch %d\n", bytesString(s.ActivationBytes),
		bytesString(s.ActivationBytes*int64(s.Batch)), s.Batch)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeColumns writes rows as columns separated by gap spaces; the first
// column is left-aligned, the others right-aligned.
func writeColumns(b *strings.Builder, rows [][]string, gap int) {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			if i == 0 {
				line.WriteString(c + strings.Repeat(" ", width[i]-len(c)))
				continue
			}
			line.WriteString(strings.Repeat(" ", gap+width[i]-len(c)) + c)
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// group formats n with thousands separators: 1,727,962.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// millions formats n in millions with two decimals: 1.73M.
func millions(n int64) string { return fmt.Sprintf("%.2fM", float64(n)/1e6) }

// magnitude formats n in millions, or in billions from 1e9: 252.89M, 1.49G.
func magnitude(n int64) string {
	if n >= 1e9 {
		return fmt.Sprintf("%.2fG", float64(n)/1e9)
	}
	return millions(n)
}

// bytesString formats a byte count in binary units: 2.6 MiB.
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", v, []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i])
}
