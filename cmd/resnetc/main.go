// Command resnetc compiles residual networks described in a small DSL.
//
// Usage:
//
//	resnetc presets                         list the built-in architectures
//	resnetc show     (-preset NAME | FILE)  print an architecture as canonical DSL
//	resnetc describe (-preset NAME | FILE) [-depth N] [-batch N] [-json]
//	resnetc dump     (-preset NAME | FILE) [-depth N] [-batch N] [-mode infer|train] [-after PASS]
//	resnetc compile  (-preset NAME | FILE) [-depth N] [-batch N] [-budget SIZE] -o DIR [-pkg NAME]
//	resnetc plan     (-preset NAME | FILE) [-depth N] [-batch N] [-mode train|infer] [-budget SIZE] [-json]
//
// Run "resnetc help" for the flags of each command.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, err)
		}
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// command is one subcommand of resnetc.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"presets", "list the built-in architectures", runPresets},
		{"show", "print an architecture as canonical DSL text", runShow},
		{"describe", "per-stage table, parameters, MACs and activation memory", runDescribe},
		{"dump", "print the IR after lowering and the compiler passes", runDump},
		{"compile", "write the Go package that trains and runs a network", runCompile},
		{"plan", "memory plan of a step: arena, state, stored tensors, recomputation", runPlan},
		{"help", "show this help", runHelp},
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printHelp(stderr)
		return usageError{errUsage}
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		printHelp(stdout)
		return nil
	}
	return usageError{fmt.Errorf("resnetc: unknown command %q (run 'resnetc help')", args[0])}
}

func runHelp(args []string, stdout, stderr io.Writer) error {
	printHelp(stdout)
	return nil
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "resnetc compiles residual networks described in a small DSL.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: resnetc COMMAND [flags] [FILE]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'resnetc COMMAND -h' for a command's flags.")
}
