package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"
	"github.com/resnetc/resnetc/passes"
)

func runPresets(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("presets", "", stderr)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("resnetc presets: takes no arguments")}
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	for _, p := range resnet.Presets() {
		fmt.Fprintf(tw, "%s\t%s\n", p.Name, p.Doc)
	}
	return tw.Flush()
}

func runShow(args []string, stdout, stderr io.Writer) error {
	var af archFlags
	fs := newFlagSet("show", "(-preset NAME | FILE) [-depth N]", stderr)
	af.register(fs, 1)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	arch, err := af.load("show", pos)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, arch.Format())
	return err
}

func runDescribe(args []string, stdout, stderr io.Writer) error {
	var af archFlags
	fs := newFlagSet("describe", "(-preset NAME | FILE) [-depth N] [-batch N] [-json]", stderr)
	af.register(fs, 1)
	asJSON := fs.Bool("json", false, "print one JSON object instead of the table")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	arch, err := af.load("describe", pos)
	if err != nil {
		return err
	}
	st, err := resnet.Describe(arch, af.batch)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return st.WriteTable(stdout)
}

func runDump(args []string, stdout, stderr io.Writer) error {
	var af archFlags
	fs := newFlagSet("dump", "(-preset NAME | FILE) [-depth N] [-batch N] [-mode infer|train] [-after PASS]", stderr)
	af.register(fs, 1)
	modeFlag := fs.String("mode", "infer", "graph `MODE`: infer (inference) or train (one training step)")
	after := fs.String("after", "", "print the IR after the named `PASS` (default: after all passes; 'lower' for none)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	mode, err := parseMode(*modeFlag)
	if err != nil {
		return err
	}
	if err := checkPassName(*after); err != nil {
		return err
	}
	arch, err := af.load("dump", pos)
	if err != nil {
		return err
	}
	g, err := resnet.Lower(arch, af.batch, mode)
	if err != nil {
		return err
	}
	if *after != "lower" {
		if _, err := passes.Run(g, passes.RunOptions{VerifyEach: true, StopAfter: *after}); err != nil {
			return err
		}
	} else if err := ir.Verify(g); err != nil {
		return err
	}
	return ir.Fprint(stdout, g)
}

// checkPassName accepts "", "lower" and the name of a pipeline pass.
func checkPassName(name string) error {
	names := []string{"lower"}
	for _, p := range passes.Passes() {
		names = append(names, p.Name)
	}
	if name == "" || slices.Contains(names, name) {
		return nil
	}
	return usageError{fmt.Errorf("-after %q: unknown pass (want one of %s)", name, strings.Join(names, ", "))}
}
