package ir

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Print returns the text form of g. The format, one statement per line:
//
//	graph "preact-resnet-20" train {
//	  %0 = input "x" : f32[8,3,32,32]
//	  %1 = param "stem.conv.weight" {init="normal", std=0.27} : f32[16,3,3,3]
//	  %2 = conv2d(%0, %1) "stem.conv" {pad=1} : f32[8,16,32,32]
//	  %3, %4 = bnstats(%2) "s1.u1.bn1" : f32[16], f32[16]
//	  ...
//	  output "logits" %40
//	  update %1 <- %52
//	}
//
// Values are numbered in order of definition, attributes are sorted by
// name, and only attributes that are set are shown, so the text is
// deterministic and Parse(Print(g)) is equal to g.
func Print(g *Graph) string {
	var b strings.Builder
	Fprint(&b, g)
	return b.String()
}

// Fprint writes the text form of g to w.
func Fprint(w io.Writer, g *Graph) error {
	p := printer{ids: map[*Value]int{}}
	for _, op := range g.Ops {
		for _, r := range op.Results {
			p.ids[r] = len(p.ids)
		}
	}
	fmt.Fprintf(&p.b, "graph %s %s {\n", strconv.Quote(g.Name), g.Mode)
	for _, op := range g.Ops {
		p.b.WriteString("  ")
		p.op(op)
		p.b.WriteByte('\n')
	}
	for _, o := range g.Outputs {
		fmt.Fprintf(&p.b, "  output %s %s\n", strconv.Quote(o.Name), p.ref(o.Value))
	}
	for _, u := range g.Updates {
		fmt.Fprintf(&p.b, "  update %s <- %s\n", p.ref(u.Target), p.ref(u.Value))
	}
	p.b.WriteString("}\n")
	_, err := io.WriteString(w, p.b.String())
	return err
}

// FormatOp returns one op's line of the text form, with values numbered
// in g's order. Errors and reports use it to show an op in context.
func FormatOp(g *Graph, op *Op) string {
	p := printer{ids: map[*Value]int{}}
	for _, o := range g.Ops {
		for _, r := range o.Results {
			p.ids[r] = len(p.ids)
		}
	}
	p.op(op)
	return p.b.String()
}

type printer struct {
	b   strings.Builder
	ids map[*Value]int
}

func (p *printer) ref(v *Value) string {
	if id, ok := p.ids[v]; ok {
		return "%" + strconv.Itoa(id)
	}
	return "%?"
}

func (p *printer) op(op *Op) {
	for i, r := range op.Results {
		if i > 0 {
			p.b.WriteString(", ")
		}
		p.b.WriteString(p.ref(r))
	}
	if len(op.Results) > 0 {
		p.b.WriteString(" = ")
	}
	p.b.WriteString(string(op.Kind))
	if !op.Kind.IsDecl() {
		p.b.WriteByte('(')
		for i, a := range op.Args {
			if i > 0 {
				p.b.WriteString(", ")
			}
			p.b.WriteString(p.ref(a))
		}
		p.b.WriteByte(')')
	}
	if op.Name != "" {
		p.b.WriteByte(' ')
		p.b.WriteString(strconv.Quote(op.Name))
	}
	if len(op.Attrs) > 0 {
		p.b.WriteString(" {")
		for i, k := range op.Attrs.Keys() {
			if i > 0 {
				p.b.WriteString(", ")
			}
			p.b.WriteString(k)
			p.b.WriteByte('=')
			p.b.WriteString(FormatAttr(op.Attrs[k]))
		}
		p.b.WriteByte('}')
	}
	if len(op.Results) > 0 {
		p.b.WriteString(" : ")
		for i, r := range op.Results {
			if i > 0 {
				p.b.WriteString(", ")
			}
			p.b.WriteString(r.Type.String())
		}
	}
}

// FormatAttr formats an attribute value as in the text form. Floats always
// carry a decimal point or exponent so that they parse back as floats, and
// use the shortest representation that parses back to the same bits.
func FormatAttr(v any) string {
	switch v := v.(type) {
	case int:
		return strconv.Itoa(v)
	case float64:
		switch {
		case math.IsInf(v, 1):
			return "inf"
		case math.IsInf(v, -1):
			return "-inf"
		case math.IsNaN(v):
			return "nan"
		}
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case []int:
		parts := make([]string, len(v))
		for i, d := range v {
			parts[i] = strconv.Itoa(d)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprintf("<%T>", v)
}
