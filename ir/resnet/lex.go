package resnet

import "strconv"

// tokKind is the class of a DSL token.
type tokKind uint8

const (
	tEOF    tokKind = iota
	tWord           // a run of bytes that are neither space nor punctuation: resnet, 32x32x3, 128/2, -6
	tSep            // end of a statement: a newline or ';'
	tLBrace         // {
	tRBrace         // }
	tLParen         // (
	tRParen         // )
	tComma          // ,
	tEq             // =
)

// token is one lexical element with the position of its first byte.
type token struct {
	kind tokKind
	text string
	pos  Pos
}

// describe names the token for an error message.
func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of file"
	case tSep:
		if t.text == ";" {
			return `";"`
		}
		return "end of line"
	}
	return strconv.Quote(t.text)
}

// punct maps the one-byte tokens to their kinds.
var punct = map[byte]tokKind{
	';': tSep, '\n': tSep,
	'{': tLBrace, '}': tRBrace,
	'(': tLParen, ')': tRParen,
	',': tComma, '=': tEq,
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// isWordByte reports whether c can be part of a word. Anything that is not
// space, punctuation or '#' is: words are checked by the statement that
// reads them, which can then say what it expected.
func isWordByte(c byte) bool {
	if isSpace(c) || c == '#' {
		return false
	}
	_, p := punct[c]
	return !p
}

// lex splits src into tokens. It cannot fail: every byte is space, part of
// a comment, punctuation or part of a word. The last token is always tEOF.
func lex(filename string, src []byte) []token {
	var toks []token
	line, lineStart := 1, 0
	pos := func(i int) Pos { return Pos{File: filename, Line: line, Col: i - lineStart + 1} }
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case isSpace(c):
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '\n':
			toks = append(toks, token{tSep, "\n", pos(i)})
			i++
			line, lineStart = line+1, i
		case !isWordByte(c):
			toks = append(toks, token{punct[c], string(c), pos(i)})
			i++
		default:
			j := i
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			toks = append(toks, token{tWord, string(src[i:j]), pos(i)})
			i = j
		}
	}
	return append(toks, token{tEOF, "", pos(len(src))})
}
