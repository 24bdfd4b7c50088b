package ir

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a position in an IR text file. Line and Col are 1-based; Col
// counts bytes. The zero Pos means "no position" (a graph built in memory).
type Pos struct {
	File      string
	Line, Col int
}

// IsValid reports whether p carries a line.
func (p Pos) IsValid() bool { return p.Line > 0 }

func (p Pos) String() string {
	switch {
	case !p.IsValid():
		return p.File
	case p.File == "":
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem found by Parse or Verify: a message and, for text
// input, where it is.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	if s := e.Pos.String(); s != "" {
		return s + ": " + e.Msg
	}
	return e.Msg
}

// ErrorList collects the errors of one Parse or Verify call, so that a
// reader fixes several problems per run instead of one.
type ErrorList []*Error

// Error returns every error, one per line.
func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns l as an error, or nil when it is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Sort orders the errors by file, line and column, keeping the order of
// errors at the same position.
func (l ErrorList) Sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
}

// errorSink appends errors up to a limit, after which it records that
// some were dropped.
type errorSink struct {
	list  ErrorList
	limit int
	more  bool // errors were dropped
}

// add appends an error and reports whether there is room for more.
func (s *errorSink) add(pos Pos, format string, args ...any) bool {
	if len(s.list) >= s.limit {
		s.more = true
		return false
	}
	s.list = append(s.list, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
	return len(s.list) < s.limit
}

// full reports whether the limit is reached.
func (s *errorSink) full() bool { return len(s.list) >= s.limit }

// err returns the collected errors, sorted when sort is set, with a last
// line saying so when some were dropped.
func (s *errorSink) err(sort bool) error {
	if len(s.list) == 0 {
		return nil
	}
	if sort {
		s.list.Sort()
	}
	if s.more {
		s.list = append(s.list, &Error{Msg: "too many errors"})
	}
	return s.list
}
