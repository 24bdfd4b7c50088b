package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"
	"github.com/resnetc/resnetc/passes"
)

func runPlan(args []string, stdout, stderr io.Writer) error {
	var af archFlags
	fs := newFlagSet("plan", "(-preset NAME | FILE) [-depth N] [-batch N] [-mode train|infer] [-budget SIZE] [-json]", stderr)
	af.register(fs, 128)
	modeFlag := fs.String("mode", "train", "graph `MODE`: train (one training step) or infer (inference)")
	budgetFlag := fs.String("budget", "", "arena budget `SIZE` of a training step, such as 2GiB, 1500MB or 2147483648;\n"+
		"forward values are recomputed in the backward pass until the arena fits (default: no budget)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the report")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	mode, err := parseMode(*modeFlag)
	if err != nil {
		return err
	}
	var budget int64
	if *budgetFlag != "" {
		if budget, err = parseSize(*budgetFlag); err != nil {
			return usageError{fmt.Errorf("-budget %q: %w", *budgetFlag, err)}
		}
		if budget == 0 {
			return usageError{fmt.Errorf("-budget %q: want a positive size", *budgetFlag)}
		}
	}
	arch, err := af.load("plan", pos)
	if err != nil {
		return err
	}
	if budget > 0 && mode != ir.Train {
		return usageError{fmt.Errorf("resnetc plan: -budget applies to training steps (-mode train)")}
	}
	plan := func(opts passes.RunOptions) (*passes.MemPlan, *passes.Context, error) {
		g, err := resnet.Lower(arch, af.batch, mode)
		if err != nil {
			return nil, nil, err
		}
		res, err := passes.Run(g, opts)
		if err != nil {
			return nil, nil, err
		}
		p, err := passes.PlanMemory(g)
		return p, res, err
	}
	p, res, err := plan(passes.RunOptions{Budget: budget})
	if err != nil {
		return err
	}
	out := planJSON{PlanSummary: p.Summary()}
	if mode == ir.Train {
		p.Remat = res.Remat
		out = planJSON{PlanSummary: p.Summary()}
		// The baselines: the same step without recomputation, and without
		// fusion either (every BatchNorm and ReLU output kept, as a
		// framework that runs the layers one by one keeps them).
		base := p
		if budget > 0 {
			if base, _, err = plan(passes.RunOptions{}); err != nil {
				return err
			}
			out.NoRematArenaBytes, out.NoRematNaiveBytes = base.ArenaBytes, base.NaiveBytes
		}
		unfused, _, err := plan(passes.RunOptions{Disable: []string{"fuse-bn-relu-conv"}})
		if err != nil {
			return err
		}
		out.UnfusedNaiveBytes = unfused.NaiveBytes
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if err := p.WriteReport(stdout); err != nil {
		return err
	}
	if mode != ir.Train {
		return nil
	}
	fmt.Fprintln(stdout, "\ncompared with:")
	if budget > 0 {
		fmt.Fprintf(stdout, "  no recomputation  arena %s, naive %s\n", passes.SizeString(out.NoRematArenaBytes), passes.SizeString(out.NoRematNaiveBytes))
	}
	fmt.Fprintf(stdout, "  no fusion         naive %s (every BatchNorm and ReLU output kept until its last use)\n", passes.SizeString(out.UnfusedNaiveBytes))
	return nil
}

// planJSON is the -json output: the plan's summary and its baselines.
type planJSON struct {
	passes.PlanSummary
	// NoRematArenaBytes and NoRematNaiveBytes are the arena and naive
	// figures of the step without recomputation (only with -budget).
	NoRematArenaBytes int64 `json:"no_remat_arena_bytes,omitempty"`
	NoRematNaiveBytes int64 `json:"no_remat_naive_bytes,omitempty"`
	// UnfusedNaiveBytes is the naive figure without BN-ReLU-conv fusion.
	UnfusedNaiveBytes int64 `json:"unfused_naive_bytes,omitempty"`
}

// sizeUnits are the byte-size suffixes parseSize accepts: binary (KiB,
// MiB, GiB, TiB) and decimal (KB, MB, GB, TB; K, M, G, T are binary, as
// in most tools that take memory limits).
var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// parseSize parses a byte count: an integer or decimal number with an
// optional unit suffix (2GiB, 1.5G, 500MB, 4096).
func parseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range sizeUnits {
		if len(num) > len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a size: want a number of bytes with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
	}
	if f < 0 {
		return 0, fmt.Errorf("negative size")
	}
	b := f * mult
	if b >= 1<<62 {
		return 0, fmt.Errorf("size too large")
	}
	if b != math.Trunc(b) {
		return 0, fmt.Errorf("not a whole number of bytes")
	}
	return int64(b), nil
}
