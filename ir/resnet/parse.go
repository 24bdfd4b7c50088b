package resnet

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Sanity limits. They keep hostile or mistyped input from asking later
// stages for absurd amounts of memory; every real ResNet is far inside.
const (
	maxSide    = 4096    // input height and width, strides
	maxWidth   = 65536   // channels and widths
	maxClasses = 1000000 // classes of the head
	maxDepth   = 100000  // depth, and units in one stage
	maxStages  = 16      // stages
	maxKernel  = 15      // stem kernel size
)

// Defaults of the bn statement, as in the reference implementation.
const (
	DefaultBNEps      = 1e-5
	DefaultBNMomentum = 0.1
)

// Parse reads one architecture from src, the text of the DSL file
// filename (used in error positions). On success every default is filled
// in and Depth and every Stage.Units are set and consistent. On failure
// the error is an ErrorList, sorted by position.
func Parse(filename string, src []byte) (*Arch, error) {
	p := &parser{toks: lex(filename, src)}
	a := p.file()
	if len(p.errs) > 0 {
		p.errs.Sort()
		return nil, p.errs
	}
	if a == nil {
		panic("BUG: resnet.Parse found no errors and no architecture")
	}
	return a, nil
}

// stmtKind indexes the statements of a resnet block.
type stmtKind int

const (
	sInput stmtKind = iota
	sClasses
	sDepth
	sStem
	sUnit
	sStages
	sBN
	numStmts
)

var stmtNames = [numStmts]string{"input", "classes", "depth", "stem", "unit", "stages", "bn"}

// required lists the statements every network needs.
var required = []stmtKind{sInput, sClasses, sStem, sUnit, sStages}

// stmt is one statement: its keyword, the tokens after it, and the
// position of whatever ends it (a newline, ';' or '}').
type stmt struct {
	kw     token
	args   []token
	end    Pos
	endTok token
}

// stageEntry is a parsed stage with the positions of its parts.
type stageEntry struct {
	Stage
	counted             bool
	text                string
	widthPos, stridePos Pos
}

// parser holds the tokens and what the statements said so far.
type parser struct {
	toks []token
	i    int
	errs ErrorList
	nerr int // errors found, including those beyond maxErrors

	seen [numStmts]Pos // keyword positions; Line 0 when absent
	ok   [numStmts]bool

	name     string
	closePos Pos

	inH, inW, inC int
	classes       int
	depth         int
	depthValPos   Pos

	stem                       Stem
	stemStridePos, stemPoolPos Pos

	unit     UnitKind
	order    Order
	shortcut Shortcut
	grow     Grow

	stages []stageEntry

	eps, momentum float64
}

func (p *parser) errorf(pos Pos, format string, args ...any) {
	p.nerr++
	if len(p.errs) < maxErrors {
		p.errs = append(p.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
	}
}

func (p *parser) full() bool { return len(p.errs) >= maxErrors }

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) skipSeps() {
	for p.peek().kind == tSep {
		p.i++
	}
}

// file parses the whole file: resnet NAME { statements } and nothing
// after. It returns nil when it found errors.
func (p *parser) file() *Arch {
	p.skipSeps()
	t := p.next()
	if t.kind != tWord || t.text != "resnet" {
		p.errorf(t.pos, `unexpected %s; want "resnet NAME {"`, t.describe())
		return nil
	}
	t = p.next()
	if t.kind != tWord {
		p.errorf(t.pos, `unexpected %s; want the network's name after "resnet"`, t.describe())
		return nil
	}
	if !validName(t.text) {
		p.errorf(t.pos, `invalid network name %s; want letters, digits, "-", "_" and "."`, quote(t.text))
	}
	p.name = t.text
	t = p.next()
	if t.kind != tLBrace {
		p.errorf(t.pos, `unexpected %s; want "{" after the network's name`, t.describe())
		return nil
	}
body:
	for {
		if p.full() {
			return nil
		}
		t := p.peek()
		switch t.kind {
		case tSep:
			p.i++
		case tRBrace:
			p.i++
			p.closePos = t.pos
			break body
		case tEOF:
			p.errorf(t.pos, `unexpected end of file; want "}"`)
			return nil
		case tWord:
			p.statement()
		default:
			p.errorf(t.pos, `unexpected %s; want a statement or "}"`, t.describe())
			p.statementArgs()
		}
	}
	p.skipSeps()
	if t := p.peek(); t.kind != tEOF {
		p.errorf(t.pos, `unexpected %s after the closing "}"; want end of file (one network per file)`, t.describe())
		return nil
	}
	p.check()
	if len(p.errs) > 0 {
		return nil
	}
	return p.arch()
}

// validName reports whether s is a network name: ASCII letters, digits,
// '-', '_' and '.'.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return s != ""
}

// statementArgs consumes the tokens up to the end of the statement and
// returns them with the token that ends it (not consumed).
func (p *parser) statementArgs() ([]token, token) {
	start := p.i
	for {
		switch p.peek().kind {
		case tSep, tRBrace, tEOF:
			return p.toks[start:p.i], p.peek()
		}
		p.i++
	}
}

// statement parses one statement, starting at its keyword.
func (p *parser) statement() {
	kw := p.next()
	args, end := p.statementArgs()
	s := stmt{kw: kw, args: args, end: end.pos, endTok: end}
	k := stmtKind(-1)
	for i, n := range stmtNames {
		if n == kw.text {
			k = stmtKind(i)
		}
	}
	if k < 0 {
		p.errorf(kw.pos, "unknown statement %s; want input, classes, depth, stem, unit, stages or bn", quote(kw.text))
		return
	}
	if first := p.seen[k]; first.Line != 0 {
		p.errorf(kw.pos, "duplicate %s statement; the first is at %s", kw.text, first)
		return
	}
	p.seen[k] = kw.pos
	before := p.nerr
	switch k {
	case sInput:
		p.input(s)
	case sClasses:
		if ws, ok := p.words(s, 1, 1, "classes N"); ok {
			p.classes, _ = p.posInt("classes", ws[0].text, ws[0].pos, maxClasses)
		}
	case sDepth:
		if ws, ok := p.words(s, 1, 1, "depth N"); ok {
			p.depthValPos = ws[0].pos
			p.depth, _ = p.posInt("depth", ws[0].text, ws[0].pos, maxDepth)
		}
	case sStem:
		p.stemStmt(s)
	case sUnit:
		p.unitStmt(s)
	case sStages:
		p.stagesStmt(s)
	case sBN:
		p.bnStmt(s)
	}
	p.ok[k] = p.nerr == before
}

// words returns the statement's arguments, which must be between min and
// max words; usage is the statement's form, for the error message.
func (p *parser) words(s stmt, min, max int, usage string) ([]token, bool) {
	for i, t := range s.args {
		if i == max {
			p.errorf(t.pos, "unexpected %s at the end of the %s statement; want %s", t.describe(), s.kw.text, usage)
			return nil, false
		}
		if t.kind != tWord {
			p.errorf(t.pos, "unexpected %s in the %s statement; want %s", t.describe(), s.kw.text, usage)
			return nil, false
		}
	}
	if len(s.args) < min {
		p.errorf(s.end, "unexpected %s in the %s statement; want %s", s.endTok.describe(), s.kw.text, usage)
		return nil, false
	}
	return s.args, true
}

// at returns the position off bytes after pos, for a part of a word.
func at(pos Pos, off int) Pos {
	pos.Col += off
	return pos
}

// quote quotes user text for a message, shortened when long.
func quote(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// posInt parses s, found at pos, as a decimal integer from 1 to max; what
// names it in errors.
func (p *parser) posInt(what, s string, pos Pos, max int) (int, bool) {
	if s == "" {
		p.errorf(pos, "%s must be a positive integer, found nothing", what)
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			p.errorf(pos, "%s must be a positive integer, found %s", what, quote(s))
			return 0, false
		}
		if n <= max { // n stays small: it only grows while it is within the limit
			n = n*10 + int(c-'0')
		}
	}
	switch {
	case n == 0:
		p.errorf(pos, "%s must be a positive integer, found %s", what, quote(s))
		return 0, false
	case n > max:
		p.errorf(pos, "%s %s is too large; the limit is %d", what, quote(s), max)
		return 0, false
	}
	return n, true
}

// isNumber reports whether s is a decimal number of the DSL:
// [+-] digits [. [digits]] | [+-] . digits, then an optional exponent.
func isNumber(s string) bool {
	i := 0
	digits := func() int {
		j := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	n := digits()
	if i < len(s) && s[i] == '.' {
		i++
		n += digits()
	}
	if n == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// number parses t as a finite number; what names it in errors.
func (p *parser) number(what string, t token) (float64, bool) {
	if t.kind != tWord || !isNumber(t.text) {
		p.errorf(t.pos, "%s must be a number, found %s", what, t.describe())
		return 0, false
	}
	v, err := strconv.ParseFloat(t.text, 64)
	if err != nil {
		p.errorf(t.pos, "%s %s is out of range", what, quote(t.text))
		return 0, false
	}
	return v, true
}

func (p *parser) input(s stmt) {
	const usage = "input HxWxC, e.g. input 32x32x3"
	ws, ok := p.words(s, 1, 1, usage)
	if !ok {
		return
	}
	w := ws[0]
	parts := strings.Split(w.text, "x")
	if len(parts) != 3 {
		p.errorf(w.pos, "input must be HxWxC, e.g. 32x32x3; found %s", quote(w.text))
		return
	}
	off := 0
	dims := [3]*int{&p.inH, &p.inW, &p.inC}
	for i, what := range []string{"input height", "input width", "input channels"} {
		max := maxSide
		if i == 2 {
			max = maxWidth
		}
		*dims[i], _ = p.posInt(what, parts[i], at(w.pos, off), max)
		off += len(parts[i]) + 1
	}
}

func (p *parser) stemStmt(s stmt) {
	const usage = "stem conv<K>x<K>[/<stride>] <width> [maxpool3x3/2], e.g. stem conv3x3 16"
	ws, ok := p.words(s, 2, 3, usage)
	if !ok {
		return
	}
	conv := ws[0]
	spec, isConv := strings.CutPrefix(conv.text, "conv")
	kernel, stride, hasStride := strings.Cut(spec, "/")
	kh, kw, square := strings.Cut(kernel, "x")
	if !isConv || !square {
		p.errorf(conv.pos, "stem must start with conv<K>x<K>[/<stride>], e.g. conv3x3 or conv7x7/2; found %s", quote(conv.text))
	} else {
		k1, ok1 := p.posInt("stem kernel size", kh, at(conv.pos, 4), maxKernel)
		k2, ok2 := p.posInt("stem kernel size", kw, at(conv.pos, 4+len(kh)+1), maxKernel)
		switch {
		case !ok1 || !ok2:
		case k1 != k2:
			p.errorf(conv.pos, "stem kernel must be square, found %dx%d", k1, k2)
		case k1%2 == 0:
			p.errorf(at(conv.pos, 4), "stem kernel size must be odd (padding K/2 then keeps the size), found %d", k1)
		default:
			p.stem.Kernel = k1
		}
		p.stem.Stride = 1
		if hasStride {
			p.stemStridePos = at(conv.pos, 4+len(kernel)+1)
			p.stem.Stride, _ = p.posInt("stem stride", stride, p.stemStridePos, maxSide)
		}
	}
	p.stem.Width, _ = p.posInt("stem width", ws[1].text, ws[1].pos, maxWidth)
	if len(ws) == 3 {
		p.stemPoolPos = ws[2].pos
		if ws[2].text != "maxpool3x3/2" {
			p.errorf(ws[2].pos, "unknown stem pooling %s; want maxpool3x3/2", quote(ws[2].text))
		}
		p.stem.MaxPool = true
	}
	p.stem.Pos = s.kw.pos
}

// options parses key=value options from args, in any order, each at most
// once. keys are the valid keys; value parses the value of key at args[j]
// (the token after '=') and returns the index after it, or -1 when the
// rest of the statement cannot be read.
func (p *parser) options(s stmt, args []token, keys []string, value func(key token, args []token, j int) int) {
	seen := map[string]Pos{}
	for j := 0; j < len(args); {
		key := args[j]
		if key.kind != tWord {
			p.errorf(key.pos, "unexpected %s in the %s statement; want an option %s", key.describe(), s.kw.text, orList(keys, "=..."))
			return
		}
		if !slices.Contains(keys, key.text) {
			p.errorf(key.pos, "unknown %s option %s; want %s", s.kw.text, quote(key.text), orList(keys, ""))
			return
		}
		if first, dup := seen[key.text]; dup {
			p.errorf(key.pos, "duplicate %s option %s; the first is at %s", s.kw.text, key.text, first)
		}
		seen[key.text] = key.pos
		if j+1 >= len(args) || args[j+1].kind != tEq {
			pos, what := s.end, s.endTok.describe()
			if j+1 < len(args) {
				pos, what = args[j+1].pos, args[j+1].describe()
			}
			p.errorf(pos, `unexpected %s after %s; want "=" and a value`, what, key.text)
			return
		}
		j += 2
		if j >= len(args) || args[j].kind != tWord {
			pos, what := s.end, s.endTok.describe()
			if j < len(args) {
				pos, what = args[j].pos, args[j].describe()
			}
			p.errorf(pos, "unexpected %s after %s=; want a value", what, key.text)
			return
		}
		if j = value(key, args, j); j < 0 {
			return
		}
	}
}

// orList formats keys as "a, b or c", each with suffix.
func orList(keys []string, suffix string) string {
	var b strings.Builder
	for i, k := range keys {
		switch {
		case i == 0:
		case i == len(keys)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(k + suffix)
	}
	return b.String()
}

var orders = map[string]Order{
	"original":         Original,
	"bn-after-add":     BNAfterAdd,
	"relu-before-add":  ReLUBeforeAdd,
	"relu-only-preact": ReLUOnlyPreact,
	"full-preact":      FullPreact,
}

// shortcutArgs is the number of parameters each shortcut kind takes and
// an example of its form.
var shortcutArgs = map[string]struct {
	kind    ShortcutKind
	n       int
	example string
}{
	"identity":      {Identity, 0, "identity"},
	"scale":         {Scale, 2, "scale(0.5, 0.5)"},
	"gate":          {Gate, 1, "gate(-6)"},
	"shortcut-gate": {ShortcutGate, 1, "shortcut-gate(-6)"},
	"conv1x1":       {Conv1x1, 0, "conv1x1"},
	"dropout":       {DropoutShort, 1, "dropout(0.5)"},
}

const (
	unitKinds     = "basic, 1-layer or bottleneck"
	orderNames    = "original, bn-after-add, relu-before-add, relu-only-preact or full-preact"
	shortcutNames = "identity, scale(λs, λf), gate(bias), shortcut-gate(bias), conv1x1 or dropout(rate)"
)

func (p *parser) unitStmt(s stmt) {
	if len(s.args) == 0 {
		p.errorf(s.end, "unexpected %s in the unit statement; want a unit kind: %s", s.endTok.describe(), unitKinds)
		return
	}
	k := s.args[0]
	switch k.text {
	case "basic":
		p.unit = Basic
	case "1-layer":
		p.unit = OneLayer
	case "bottleneck":
		p.unit = Bottleneck
	default:
		if k.kind == tWord {
			p.errorf(k.pos, "unknown unit kind %s; want %s", quote(k.text), unitKinds)
		} else {
			p.errorf(k.pos, "unexpected %s in the unit statement; want a unit kind: %s", k.describe(), unitKinds)
			return
		}
	}
	p.order = Original
	p.shortcut = Shortcut{Kind: Identity}
	p.grow = GrowA
	if p.unit == Bottleneck {
		p.grow = GrowB
	}
	p.options(s, s.args[1:], []string{"order", "shortcut", "grow"}, func(key token, args []token, j int) int {
		v := args[j]
		switch key.text {
		case "order":
			o, ok := orders[v.text]
			if !ok {
				p.errorf(v.pos, "unknown order %s; want %s", quote(v.text), orderNames)
			}
			p.order = o
		case "grow":
			switch v.text {
			case "A":
				p.grow = GrowA
			case "projection", "B":
				p.grow = GrowB
			default:
				p.errorf(v.pos, "unknown grow %s; want A or projection (B)", quote(v.text))
			}
		case "shortcut":
			return p.shortcutValue(args, j)
		}
		return j + 1
	})
}

// shortcutValue parses a shortcut kind at args[j] and its parenthesized
// parameters, and returns the index after them (-1 when the statement
// cannot be read further).
func (p *parser) shortcutValue(args []token, j int) int {
	v := args[j]
	sa, ok := shortcutArgs[v.text]
	if !ok {
		p.errorf(v.pos, "unknown shortcut %s; want %s", quote(v.text), shortcutNames)
		return -1
	}
	j++
	hasParen := j < len(args) && args[j].kind == tLParen
	switch {
	case sa.n == 0 && hasParen:
		p.errorf(args[j].pos, "shortcut %s takes no parameters", v.text)
		return -1
	case sa.n == 0:
		p.shortcut = Shortcut{Kind: sa.kind}
		return j
	case !hasParen:
		pos := v.pos
		pos.Col += len(v.text)
		p.errorf(pos, "shortcut %s needs %s, e.g. %s", v.text, plural(sa.n, "parameter"), sa.example)
		return -1
	}
	// '(' [number {',' number}] ')'
	open := args[j]
	var nums []token
	j++
	if j < len(args) && args[j].kind == tRParen {
		j++
	} else {
		for {
			if j >= len(args) {
				p.errorf(open.pos, `unclosed "(" in shortcut %s; want %s`, v.text, sa.example)
				return -1
			}
			if args[j].kind != tWord {
				p.errorf(args[j].pos, "unexpected %s in shortcut %s; want a number, e.g. %s", args[j].describe(), v.text, sa.example)
				return -1
			}
			nums = append(nums, args[j])
			j++
			if j < len(args) && args[j].kind == tRParen {
				j++
				break
			}
			if j >= len(args) || args[j].kind != tComma {
				pos, what := open.pos, `unclosed "("`
				if j < len(args) {
					pos, what = args[j].pos, "unexpected "+args[j].describe()
				}
				p.errorf(pos, `%s in shortcut %s; want "," or ")", e.g. %s`, what, v.text, sa.example)
				return -1
			}
			j++
		}
	}
	if len(nums) != sa.n {
		p.errorf(open.pos, "shortcut %s takes %s, found %d; e.g. %s", v.text, plural(sa.n, "parameter"), len(nums), sa.example)
		return j
	}
	sc := Shortcut{Kind: sa.kind}
	switch sa.kind {
	case Scale:
		sc.ShortcutScale, _ = p.number("shortcut scale λs", nums[0])
		sc.BranchScale, _ = p.number("branch scale λf", nums[1])
	case Gate, ShortcutGate:
		sc.GateBias, _ = p.number("gate bias", nums[0])
	case DropoutShort:
		var ok bool
		if sc.DropRate, ok = p.number("dropout rate", nums[0]); ok && (sc.DropRate < 0 || sc.DropRate >= 1) {
			p.errorf(nums[0].pos, "dropout rate must be in [0, 1), found %s", nums[0].text)
		}
	}
	p.shortcut = sc
	return j
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func (p *parser) stagesStmt(s stmt) {
	const usage = "[<units>x]<width>[/<stride>] for each stage, e.g. stages 16 32/2 64/2"
	if len(s.args) == 0 {
		p.errorf(s.end, "unexpected %s in the stages statement; want %s", s.endTok.describe(), usage)
		return
	}
	for i, t := range s.args {
		if t.kind != tWord {
			p.errorf(t.pos, "unexpected %s in the stages statement; want %s", t.describe(), usage)
			return
		}
		if i == maxStages {
			p.errorf(t.pos, "too many stages: at most %d", maxStages)
			return
		}
		e := stageEntry{Stage: Stage{Stride: 1, Pos: t.pos}, text: t.text}
		rest := t.text
		off := 0
		if count, after, ok := strings.Cut(rest, "x"); ok {
			e.counted = true
			e.Units, _ = p.posInt("unit count", count, t.pos, maxDepth)
			rest, off = after, len(count)+1
		}
		width, stride, hasStride := strings.Cut(rest, "/")
		e.widthPos = at(t.pos, off)
		e.Width, _ = p.posInt("width", width, e.widthPos, maxWidth)
		if hasStride {
			e.stridePos = at(e.widthPos, len(width)+1)
			e.Stride, _ = p.posInt("stride", stride, e.stridePos, maxSide)
		}
		p.stages = append(p.stages, e)
	}
	for i, e := range p.stages[1:] {
		if e.counted == p.stages[0].counted {
			continue
		}
		if e.counted {
			p.errorf(e.Pos, "stage %d gives a unit count but stage 1 does not; give every stage a count or none (and a depth)", i+2)
		} else {
			p.errorf(e.Pos, "stage %d gives no unit count but stage 1 does; give every stage a count (e.g. %s) or none", i+2, quote(strconv.Itoa(p.stages[0].Units)+"x"+e.text))
		}
		break
	}
}

func (p *parser) bnStmt(s stmt) {
	p.eps, p.momentum = DefaultBNEps, DefaultBNMomentum
	p.options(s, s.args, []string{"eps", "momentum"}, func(key token, args []token, j int) int {
		v, ok := p.number("bn "+key.text, args[j])
		if !ok {
			return j + 1
		}
		switch key.text {
		case "eps":
			if v <= 0 {
				p.errorf(args[j].pos, "bn eps must be positive, found %s", args[j].text)
			}
			p.eps = v
		case "momentum":
			if v <= 0 || v > 1 {
				p.errorf(args[j].pos, "bn momentum must be in (0, 1], found %s", args[j].text)
			}
			p.momentum = v
		}
		return j + 1
	})
}

// check runs the checks that involve several statements, each only when
// the statements it reads were parsed without errors.
func (p *parser) check() {
	var missing []string
	for _, k := range required {
		if p.seen[k].Line == 0 {
			missing = append(missing, stmtNames[k])
		}
	}
	if len(missing) > 0 {
		what := "statement"
		if len(missing) > 1 {
			what = "statements"
		}
		p.errorf(p.closePos, "missing %s %s (every network needs input, classes, stem, unit and stages)", andOrList(missing, "and"), what)
	}
	unitStages := p.ok[sUnit] && p.ok[sStages]
	if unitStages && p.unit == Bottleneck {
		for _, e := range p.stages {
			if e.Width%4 != 0 {
				p.errorf(e.widthPos, "bottleneck width %d is not divisible by 4 (the inner convs have width/4)", e.Width)
			}
		}
	}
	if unitStages && p.ok[sStem] && p.grow == GrowA && p.shortcut.Kind != Conv1x1 {
		prev := p.stem.Width
		for _, e := range p.stages {
			if e.Width < prev {
				p.errorf(e.widthPos, "grow=A cannot shrink %d channels to %d (option A only pads with zeros); use grow=projection", prev, e.Width)
				break
			}
			prev = e.Width
		}
	}
	if unitStages && (p.seen[sDepth].Line == 0 || p.ok[sDepth]) {
		p.checkDepth()
	}
	if p.ok[sInput] && p.ok[sStem] && p.ok[sStages] {
		p.checkSpatial()
	}
}

// checkDepth fills the unit counts from the depth, or the depth from the
// unit counts, or reports that they disagree.
func (p *parser) checkDepth() {
	hasDepth := p.seen[sDepth].Line != 0
	if !p.stages[0].counted {
		if !hasDepth {
			p.errorf(p.seen[sStages], "the stages give no unit counts, so a depth statement is needed (or counts, e.g. 18x%d)", p.stages[0].Width)
			return
		}
		n, err := unitsPerStage(p.unit, len(p.stages), p.depth)
		if err != "" {
			p.errorf(p.depthValPos, "%s", err)
			return
		}
		for i := range p.stages {
			p.stages[i].Units = n
		}
		return
	}
	total := 0
	var counts []string
	for _, e := range p.stages {
		total += e.Units
		counts = append(counts, strconv.Itoa(e.Units))
	}
	d := p.unit.LayersPerUnit()*total + 2
	switch {
	case d > maxDepth:
		p.errorf(p.seen[sStages], "the stages' %d %s units make depth %d; the limit is %d", total, p.unit, d, maxDepth)
	case hasDepth && p.depth != d:
		sum := strings.Join(counts, "+")
		if len(counts) > 1 {
			sum += " = " + strconv.Itoa(total)
		}
		p.errorf(p.depthValPos, "depth %d does not match the stages: %s %s units make depth %d (%d*%d+2)",
			p.depth, sum, p.unit, d, p.unit.LayersPerUnit(), total)
	default:
		p.depth = d
	}
}

// checkSpatial follows the feature map size through the stem and the
// stages' strides. A stride s needs a map of at least s positions per
// side: n/s rounds to zero below that.
func (p *parser) checkSpatial() {
	h, w := p.inH, p.inW
	if s := p.stem.Stride; s > min(h, w) {
		p.errorf(p.stemStridePos, "stem stride %d would shrink the %dx%d input to zero; want a stride of at most %d", s, h, w, min(h, w))
		return
	}
	h, w = (h-1)/p.stem.Stride+1, (w-1)/p.stem.Stride+1
	if p.stem.MaxPool {
		if min(h, w) < 2 {
			p.errorf(p.stemPoolPos, "maxpool3x3/2 would shrink the stem's %dx%d output to zero", h, w)
			return
		}
		h, w = (h-1)/2+1, (w-1)/2+1
	}
	for i, e := range p.stages {
		if s := e.Stride; s > min(h, w) {
			p.errorf(e.stridePos, "stride %d of stage %d would shrink its %dx%d input to zero; want a stride of at most %d", s, i+1, h, w, min(h, w))
			return
		}
		h, w = (h-1)/e.Stride+1, (w-1)/e.Stride+1
	}
}

// arch builds the result from a parse without errors.
func (p *parser) arch() *Arch {
	a := &Arch{
		Name:       p.name,
		InputH:     p.inH,
		InputW:     p.inW,
		InputC:     p.inC,
		Classes:    p.classes,
		Depth:      p.depth,
		Stem:       p.stem,
		Unit:       p.unit,
		Order:      p.order,
		Shortcut:   p.shortcut,
		Grow:       p.grow,
		BNEps:      DefaultBNEps,
		BNMomentum: DefaultBNMomentum,
		DepthPos:   p.seen[sDepth],
		UnitPos:    p.seen[sUnit],
		InputPos:   p.seen[sInput],
		ClassesPos: p.seen[sClasses],
	}
	if p.seen[sBN].Line != 0 {
		a.BNEps, a.BNMomentum = p.eps, p.momentum
	}
	for _, e := range p.stages {
		a.Stages = append(a.Stages, e.Stage)
	}
	if a.Depth != a.Unit.LayersPerUnit()*a.Units()+2 {
		panic(fmt.Sprintf("BUG: parsed depth %d does not match %d %s units", a.Depth, a.Units(), a.Unit))
	}
	return a
}
