package ir

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Limits that keep hostile text from making Parse allocate without bound.
const (
	maxParseErrors = 10
	maxRank        = 8
	maxElems       = 1 << 40 // elements of one tensor
)

// Parse reads the text form written by Print and returns the graph. It
// checks syntax, that every %N is defined exactly once (references may
// point forward, so a cyclic graph parses and Verify reports the cycle),
// and that the result types written on each non-declaration op are the
// ones the op table infers. It does not verify the graph: call Verify.
//
// Text may carry comments, from # to the end of the line, and blank lines.
// Errors are an ErrorList whose entries read "file:line:col: message".
func Parse(filename string, src []byte) (*Graph, error) {
	p := &parser{
		file: filename,
		errs: errorSink{limit: maxParseErrors},
		defs: map[int]*valueDef{},
		g:    &Graph{},
	}
	p.parse(src)
	if err := p.errs.err(true); err != nil {
		return nil, err
	}
	return p.g, nil
}

// Lexing. The text form is line oriented (strings never span lines), so
// each line is split into tokens on its own.

type tokKind uint8

const (
	tEOL    tokKind = iota // end of line (or a comment)
	tIdent                 // graph, conv2d, f32, nchw8c, true, inf
	tInt                   // -3
	tFloat                 // 0.1, 1e-05, -inf
	tString                // "name", already unquoted in val
	tValue                 // %12
	tPunct                 // ( ) { } [ ] , = : @ <-
)

type lexToken struct {
	kind tokKind
	text string // as written
	val  string // tString: the unquoted string
	col  int    // 1-based byte column
}

// describe says what a token is in an error message.
func (t lexToken) describe() string {
	switch t.kind {
	case tEOL:
		return "end of line"
	case tString:
		return "string " + clipText(t.text)
	}
	return clipText(strconv.Quote(t.text))
}

// clipText shortens long token text in error messages.
func clipText(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

func lexLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func lexDigit(c byte) bool  { return c >= '0' && c <= '9' }

// lexLine splits one line into tokens, ending with a tEOL token. On a
// lexical error it returns the column and message.
func lexLine(line []byte) ([]lexToken, int, string) {
	var toks []lexToken
	i := 0
	for i < len(line) {
		c := line[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case c == '#':
			i = len(line)
			continue
		case lexLetter(c):
			for i < len(line) && (lexLetter(line[i]) || lexDigit(line[i])) {
				i++
			}
			toks = append(toks, lexToken{kind: tIdent, text: string(line[start:i]), col: start + 1})
		case lexDigit(c) || c == '-' && i+1 < len(line) && (lexDigit(line[i+1]) || lexLetter(line[i+1])):
			i++
			for i < len(line) {
				d := line[i]
				if lexLetter(d) || lexDigit(d) || d == '.' ||
					(d == '+' || d == '-') && (line[i-1] == 'e' || line[i-1] == 'E') {
					i++
					continue
				}
				break
			}
			text := string(line[start:i])
			kind, ok := classifyNumber(text)
			if !ok {
				return nil, start + 1, fmt.Sprintf("malformed number %s", clipText(strconv.Quote(text)))
			}
			toks = append(toks, lexToken{kind: kind, text: text, col: start + 1})
		case c == '%':
			i++
			for i < len(line) && lexDigit(line[i]) {
				i++
			}
			if i == start+1 {
				return nil, start + 1, `expected value number after "%"`
			}
			toks = append(toks, lexToken{kind: tValue, text: string(line[start:i]), col: start + 1})
		case c == '"':
			i++
			for i < len(line) && line[i] != '"' {
				if line[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(line) {
				return nil, start + 1, "string not terminated"
			}
			i++
			text := string(line[start:i])
			s, err := strconv.Unquote(text)
			if err != nil {
				return nil, start + 1, fmt.Sprintf("malformed string %s", clipText(text))
			}
			toks = append(toks, lexToken{kind: tString, text: text, val: s, col: start + 1})
		case c == '<' && i+1 < len(line) && line[i+1] == '-':
			i += 2
			toks = append(toks, lexToken{kind: tPunct, text: "<-", col: start + 1})
		case strings.IndexByte("(){}[],=:@", c) >= 0:
			i++
			toks = append(toks, lexToken{kind: tPunct, text: string(c), col: start + 1})
		default:
			return nil, start + 1, fmt.Sprintf("unexpected character %q", rune(c))
		}
	}
	return append(toks, lexToken{kind: tEOL, col: len(line) + 1}), 0, ""
}

// classifyNumber accepts -?D+ as an int and -?D+(.D*)?([eE][+-]?D+)? with a
// point or an exponent, or -inf, as a float.
func classifyNumber(s string) (tokKind, bool) {
	if s == "-inf" {
		return tFloat, true
	}
	s = strings.TrimPrefix(s, "-")
	digits := func() int {
		n := 0
		for n < len(s) && lexDigit(s[n]) {
			n++
		}
		s = s[n:]
		return n
	}
	if digits() == 0 {
		return 0, false
	}
	kind := tInt
	if strings.HasPrefix(s, ".") {
		s = s[1:]
		digits()
		kind = tFloat
	}
	if strings.HasPrefix(s, "e") || strings.HasPrefix(s, "E") {
		s = s[1:]
		if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
			s = s[1:]
		}
		if digits() == 0 {
			return 0, false
		}
		kind = tFloat
	}
	return kind, s == ""
}

// Parsing.

// valueDef is a %N definition.
type valueDef struct {
	v     *Value
	pos   Pos
	valid bool // the value's type was read
}

// parsedRef is a %N use, resolved once every line is read.
type parsedRef struct {
	id  int
	pos Pos
}

// parsedOp is an op with the positions and references that resolving and
// type checking need.
type parsedOp struct {
	op       *Op
	pos      Pos
	args     []parsedRef
	typePos  []Pos
	complete bool // the whole line parsed
}

type parsedUpdate struct{ target, value parsedRef }

type parser struct {
	file string
	errs errorSink
	g    *Graph

	// The current line.
	line int
	toks []lexToken
	i    int

	defs    map[int]*valueDef
	ops     []*parsedOp
	outputs []parsedRef
	updates []parsedUpdate
}

// errLine is returned by the statement parsers once an error on the line
// has been recorded; the rest of the line is skipped.
type errLine struct{}

func (errLine) Error() string { return "error on line" }

func (p *parser) pos(col int) Pos { return Pos{File: p.file, Line: p.line, Col: col} }

func (p *parser) errorAt(col int, format string, args ...any) error {
	p.errs.add(p.pos(col), format, args...)
	return errLine{}
}

func (p *parser) peek() lexToken { return p.toks[p.i] }

func (p *parser) next() lexToken {
	t := p.toks[p.i]
	if t.kind != tEOL {
		p.i++
	}
	return t
}

func (p *parser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tPunct && t.text == s
}

// expect consumes the punctuation s or records "expected s, found ...".
func (p *parser) expect(s string) error {
	if p.isPunct(s) {
		p.next()
		return nil
	}
	t := p.peek()
	return p.errorAt(t.col, "expected %q, found %s", s, t.describe())
}

func (p *parser) expectEOL() error {
	if t := p.peek(); t.kind != tEOL {
		return p.errorAt(t.col, "expected end of line, found %s", t.describe())
	}
	return nil
}

const (
	stHeader = iota // before "graph NAME MODE {"
	stBody          // inside the braces
	stDone          // after the closing brace
	stJunk          // after the closing brace and text already reported
)

func (p *parser) parse(src []byte) {
	lines := bytes.Split(src, []byte("\n"))
	state := stHeader
	for n, text := range lines {
		if p.errs.full() {
			p.errs.more = true
			return
		}
		p.line = n + 1
		toks, col, msg := lexLine(text)
		if msg != "" {
			p.errs.add(p.pos(col), "%s", msg)
			if state == stHeader {
				state = stBody
			}
			continue
		}
		if toks[0].kind == tEOL {
			continue
		}
		p.toks, p.i = toks, 0
		switch state {
		case stHeader:
			state = stBody
			if t := p.peek(); t.kind == tIdent && t.text == "graph" {
				p.header()
			} else {
				p.errorAt(t.col, `expected "graph", found %s`, t.describe())
			}
		case stBody:
			if p.isPunct("}") {
				p.next()
				p.expectEOL()
				state = stDone
				continue
			}
			p.statement()
		case stDone:
			p.errorAt(p.peek().col, "expected end of file after the graph's closing brace, found %s", p.peek().describe())
			state = stJunk // one such error is enough
		}
	}
	p.line = len(lines)
	endCol := len(lines[len(lines)-1]) + 1
	switch state {
	case stHeader:
		p.errs.add(p.pos(endCol), `expected "graph", found end of file`)
		return
	case stBody:
		p.errs.add(p.pos(endCol), `expected "}" closing the graph, found end of file`)
	}
	p.resolve()
}

// header parses `graph "NAME" MODE {`.
func (p *parser) header() error {
	p.next()
	t := p.next()
	if t.kind != tString {
		return p.errorAt(t.col, "expected graph name (a quoted string), found %s", t.describe())
	}
	p.g.Name = t.val
	t = p.next()
	switch {
	case t.kind == tIdent && t.text == "infer":
		p.g.Mode = Infer
	case t.kind == tIdent && t.text == "train":
		p.g.Mode = Train
	default:
		return p.errorAt(t.col, `expected mode "infer" or "train", found %s`, t.describe())
	}
	if err := p.expect("{"); err != nil {
		return err
	}
	return p.expectEOL()
}

// statement parses an op, an output or an update.
func (p *parser) statement() error {
	t := p.peek()
	switch {
	case t.kind == tValue:
		return p.opLine()
	case t.kind == tIdent && t.text == "output":
		p.next()
		nt := p.next()
		if nt.kind != tString {
			return p.errorAt(nt.col, "expected output name (a quoted string), found %s", nt.describe())
		}
		r, err := p.valueRef()
		if err != nil {
			return err
		}
		if err := p.expectEOL(); err != nil {
			return err
		}
		p.g.Outputs = append(p.g.Outputs, Output{Name: nt.val})
		p.outputs = append(p.outputs, r)
		return nil
	case t.kind == tIdent && t.text == "update":
		p.next()
		target, err := p.valueRef()
		if err != nil {
			return err
		}
		if err := p.expect("<-"); err != nil {
			return err
		}
		value, err := p.valueRef()
		if err != nil {
			return err
		}
		if err := p.expectEOL(); err != nil {
			return err
		}
		p.g.Updates = append(p.g.Updates, Update{})
		p.updates = append(p.updates, parsedUpdate{target, value})
		return nil
	}
	return p.errorAt(t.col, `expected an op ("%%N = ..."), "output", "update" or "}", found %s`, t.describe())
}

// valueID reads the number of a %N token.
func (p *parser) valueID(t lexToken) (int, error) {
	if t.kind != tValue {
		return 0, p.errorAt(t.col, "expected a value (%%N), found %s", t.describe())
	}
	id, err := strconv.Atoi(t.text[1:])
	if err != nil {
		return 0, p.errorAt(t.col, "value number %s is too large", clipText(t.text))
	}
	return id, nil
}

func (p *parser) valueRef() (parsedRef, error) {
	t := p.next()
	id, err := p.valueID(t)
	return parsedRef{id: id, pos: p.pos(t.col)}, err
}

// opLine parses `%A, %B = kind(%X, %Y) "name" {k=v, ...} : T1, T2`.
func (p *parser) opLine() error {
	po := &parsedOp{op: &Op{Attrs: Attrs{}}, pos: p.pos(p.peek().col)}
	op := po.op
	p.g.Ops = append(p.g.Ops, op)
	p.ops = append(p.ops, po)

	// Results are defined as soon as they are read, so that an error later
	// on the line does not also make every use of them an error.
	var defs []*valueDef
	for {
		t := p.next()
		id, err := p.valueID(t)
		if err != nil {
			return err
		}
		v := &Value{Def: op, Index: len(op.Results)}
		op.Results = append(op.Results, v)
		if d, ok := p.defs[id]; ok {
			return p.errorAt(t.col, "%s is already defined at %s", t.text, d.pos)
		}
		d := &valueDef{v: v, pos: p.pos(t.col)}
		p.defs[id] = d
		defs = append(defs, d)
		if !p.isPunct(",") {
			break
		}
		p.next()
	}
	if !p.isPunct("=") {
		t := p.peek()
		return p.errorAt(t.col, `expected "," or "=", found %s`, t.describe())
	}
	p.next()

	t := p.next()
	if t.kind != tIdent {
		return p.errorAt(t.col, "expected op kind, found %s", t.describe())
	}
	op.Kind = OpKind(t.text)
	if Info(op.Kind) == nil {
		return p.errorAt(t.col, "unknown op kind %q", t.text)
	}

	if op.Kind.IsDecl() {
		if p.isPunct("(") {
			return p.errorAt(p.peek().col, "%s declarations take no arguments; expected name, attributes or \":\"", op.Kind)
		}
	} else {
		if err := p.expect("("); err != nil {
			return err
		}
		if !p.isPunct(")") {
			for {
				r, err := p.valueRef()
				if err != nil {
					return err
				}
				po.args = append(po.args, r)
				t := p.next()
				if t.kind == tPunct && t.text == ")" {
					break
				}
				if t.kind != tPunct || t.text != "," {
					return p.errorAt(t.col, `expected ")" or ",", found %s`, t.describe())
				}
			}
		} else {
			p.next()
		}
	}

	if t := p.peek(); t.kind == tString {
		p.next()
		op.Name = t.val
	}
	if p.isPunct("{") {
		if err := p.attrs(op.Attrs); err != nil {
			return err
		}
	}

	colon := p.peek()
	if err := p.expect(":"); err != nil {
		return err
	}
	for i := 0; ; i++ {
		t := p.peek()
		typ, err := p.typ()
		if err != nil {
			return err
		}
		if i < len(defs) {
			defs[i].v.Type = typ
			defs[i].valid = true
		}
		po.typePos = append(po.typePos, p.pos(t.col))
		if !p.isPunct(",") {
			break
		}
		p.next()
	}
	if err := p.expectEOL(); err != nil {
		return err
	}
	if n, m := len(op.Results), len(po.typePos); n != m {
		return p.errorAt(colon.col, "%d results but %d types", n, m)
	}
	po.complete = true
	return nil
}

// attrs parses `{k=v, ...}` into a.
func (p *parser) attrs(a Attrs) error {
	p.next() // {
	if p.isPunct("}") {
		p.next()
		return nil
	}
	for {
		t := p.next()
		if t.kind != tIdent {
			return p.errorAt(t.col, "expected attribute name, found %s", t.describe())
		}
		if _, dup := a[t.text]; dup {
			return p.errorAt(t.col, "attribute %s is given twice", t.text)
		}
		if err := p.expect("="); err != nil {
			return err
		}
		v, err := p.attrValue()
		if err != nil {
			return err
		}
		a[t.text] = v
		t = p.next()
		if t.kind == tPunct && t.text == "}" {
			return nil
		}
		if t.kind != tPunct || t.text != "," {
			return p.errorAt(t.col, `expected "}" or ",", found %s`, t.describe())
		}
	}
}

func (p *parser) attrValue() (any, error) {
	t := p.next()
	switch t.kind {
	case tInt:
		return p.intValue(t)
	case tFloat:
		switch t.text {
		case "-inf":
			return math.Inf(-1), nil
		}
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, p.errorAt(t.col, "float %s is out of range", clipText(t.text))
		}
		return f, nil
	case tString:
		return t.val, nil
	case tIdent:
		switch t.text {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "inf":
			return math.Inf(1), nil
		case "nan":
			return math.NaN(), nil
		}
	case tPunct:
		if t.text == "[" {
			list := []int{}
			if p.isPunct("]") {
				p.next()
				return list, nil
			}
			for {
				t := p.next()
				if t.kind != tInt {
					return nil, p.errorAt(t.col, "expected integer in list, found %s", t.describe())
				}
				n, err := p.intValue(t)
				if err != nil {
					return nil, err
				}
				list = append(list, n)
				t = p.next()
				if t.kind == tPunct && t.text == "]" {
					return list, nil
				}
				if t.kind != tPunct || t.text != "," {
					return nil, p.errorAt(t.col, `expected "]" or ",", found %s`, t.describe())
				}
			}
		}
	}
	return nil, p.errorAt(t.col, "expected attribute value (integer, float, string, true, false or [integers]), found %s", t.describe())
}

func (p *parser) intValue(t lexToken) (int, error) {
	n, err := strconv.Atoi(t.text)
	if err != nil {
		return 0, p.errorAt(t.col, "integer %s is out of range", clipText(t.text))
	}
	return n, nil
}

// typ parses f32[8,16,32,32]@nchw8c.
func (p *parser) typ() (Type, error) {
	var typ Type
	t := p.next()
	switch {
	case t.kind == tIdent && t.text == "f32":
		typ.DType = F32
	case t.kind == tIdent && t.text == "i32":
		typ.DType = I32
	default:
		return typ, p.errorAt(t.col, "expected type (f32[...] or i32[...]), found %s", t.describe())
	}
	if err := p.expect("["); err != nil {
		return typ, err
	}
	if p.isPunct("]") {
		p.next()
	} else {
		elems := 1
		for {
			t := p.next()
			if t.kind != tInt {
				return typ, p.errorAt(t.col, "expected dimension, found %s", t.describe())
			}
			d, err := strconv.Atoi(t.text)
			if err != nil || d < 1 || d > maxElems {
				return typ, p.errorAt(t.col, "dimension %s is out of range (want 1 to %d)", clipText(t.text), maxElems)
			}
			if len(typ.Shape) == maxRank {
				return typ, p.errorAt(t.col, "rank is above %d", maxRank)
			}
			if elems > maxElems/d {
				return typ, p.errorAt(t.col, "tensor has more than %d elements", maxElems)
			}
			elems *= d
			typ.Shape = append(typ.Shape, d)
			t = p.next()
			if t.kind == tPunct && t.text == "]" {
				break
			}
			if t.kind != tPunct || t.text != "," {
				return typ, p.errorAt(t.col, `expected "]" or ",", found %s`, t.describe())
			}
		}
	}
	if p.isPunct("@") {
		p.next()
		t := p.next()
		switch {
		case t.kind == tIdent && t.text == "nchw":
			typ.Layout = NCHW
		case t.kind == tIdent && t.text == "nchw8c":
			typ.Layout = NCHW8c
		default:
			return typ, p.errorAt(t.col, `expected layout "nchw" or "nchw8c", found %s`, t.describe())
		}
	}
	return typ, nil
}

// resolve points every reference at its value and checks each op's
// written result types against the op table.
func (p *parser) resolve() {
	get := func(r parsedRef) (*valueDef, bool) {
		d, ok := p.defs[r.id]
		if !ok {
			p.errs.add(r.pos, "%%%d is not defined", r.id)
		}
		return d, ok
	}
	for _, po := range p.ops {
		for _, r := range po.args {
			if d, ok := get(r); ok {
				po.op.Args = append(po.op.Args, d.v)
			}
		}
	}
	for i, r := range p.outputs {
		if d, ok := get(r); ok {
			p.g.Outputs[i].Value = d.v
		}
	}
	for i, u := range p.updates {
		if d, ok := get(u.target); ok {
			p.g.Updates[i].Target = d.v
		}
		if d, ok := get(u.value); ok {
			p.g.Updates[i].Value = d.v
		}
	}
	for _, po := range p.ops {
		if p.errs.full() {
			return
		}
		if po.complete && !po.op.Kind.IsDecl() && p.argsKnown(po) {
			p.checkTypes(po)
		}
	}
}

// argsKnown reports whether every argument of po resolved to a value whose
// type was read.
func (p *parser) argsKnown(po *parsedOp) bool {
	if len(po.op.Args) != len(po.args) {
		return false
	}
	for _, r := range po.args {
		if d := p.defs[r.id]; !d.valid {
			return false
		}
	}
	return true
}

func (p *parser) checkTypes(po *parsedOp) {
	op := po.op
	types, err := InferTypes(op)
	if err != nil {
		p.errs.add(po.pos, "%v", err)
		return
	}
	if len(types) != len(op.Results) {
		p.errs.add(po.pos, "%s: has %d results, but the op table infers %d", op, len(op.Results), len(types))
		return
	}
	for i, t := range types {
		if r := op.Results[i]; !r.Type.Equal(expectedType(op, t, r.Type)) {
			p.errs.add(po.typePos[i], "%s: result %d is written %v, but the op table infers %v", op, i, r.Type, t)
		}
	}
}
