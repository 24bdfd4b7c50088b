package ir_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	_ "github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// FuzzParse checks that Parse and Verify never panic, that errors are a
// bounded list of positioned one-line errors, and that a graph which
// parses and verifies prints to text that parses to the same graph and
// prints identically.
func FuzzParse(f *testing.F) {
	for _, g := range roundTripGraphs() {
		f.Add([]byte(ir.Print(g)))
	}
	f.Add([]byte(ir.Print(verifyBase())))
	f.Add([]byte(validText))
	for _, c := range parseErrorCases {
		f.Add([]byte(c.src))
	}
	f.Add([]byte("graph \"g\" infer {\n  %0 = input \"x\" : f32[1,2]\n  %1 = add(%0, %2) \"a\" : f32[1,2]\n  %2 = relu(%1) \"r\" : f32[1,2]\n}\n"))
	f.Add([]byte("graph \"g\" train {\n  %0 = param \"w\" {init=\"he\"} : f32[1]\n  update %0 <- %0\n  update %0 <- %0\n}\n"))

	f.Fuzz(func(t *testing.T, src []byte) {
		g, err := ir.Parse("fuzz.ir", src)
		if err != nil {
			if g != nil {
				t.Fatal("Parse returned a graph and an error")
			}
			var list ir.ErrorList
			if !errors.As(err, &list) || len(list) == 0 || len(list) > 11 {
				t.Fatalf("Parse error is %T with %d entries, want an ir.ErrorList of 1 to 11", err, len(list))
			}
			for i, e := range list {
				if e.Pos.Line == 0 && !(i == len(list)-1 && e.Msg == "too many errors") {
					t.Fatalf("error without a position: %v", e)
				}
			}
			return
		}
		if ir.Verify(g) != nil {
			return
		}
		text := ir.Print(g)
		g2, err := ir.Parse("printed.ir", []byte(text))
		if err != nil {
			t.Fatalf("Print of a verified graph does not parse: %v\n%s", err, text)
		}
		if d := cmp.Diff(canon(g), canon(g2)); d != "" {
			t.Fatalf("Parse(Print(g)) mismatch (-want +got):\n%s", d)
		}
		if again := ir.Print(g2); again != text {
			t.Fatalf("Print(Parse(Print(g))) mismatch (-want +got):\n%s", cmp.Diff(text, again))
		}
		if err := ir.Verify(g2); err != nil {
			t.Fatalf("reparsed graph does not verify: %v", err)
		}
	})
}
