package train

import (
	"fmt"
	"math"
)

// Learning-rate schedule kinds.
const (
	ScheduleStep     = "step"     // the paper's: divide by 10 at each milestone
	ScheduleCosine   = "cosine"   // half a cosine from LR down to 0 at the end
	ScheduleOneCycle = "onecycle" // up from LR/25 to LR over 30%, then down to LR/25e4
)

// oneCycle constants, those of the common one-cycle policy: the share of
// the run spent rising, the start divisor and the final divisor.
const (
	oneCycleRise     = 0.3
	oneCycleDiv      = 25
	oneCycleFinalDiv = 1e4
)

// Schedule is a learning-rate schedule over a run of Total iterations. It is
// a pure function of the iteration index so that a resumed run uses the same
// rates as an uninterrupted one.
type Schedule struct {
	Kind       string  // ScheduleStep, ScheduleCosine or ScheduleOneCycle
	LR         float64 // the base learning rate
	Total      int64   // iterations of the run
	Milestones []int64 // step: the rate is divided by 10 from each of these iteration indices on
	Warmup     int64   // the first Warmup iterations run at WarmupLR, whatever the kind
	WarmupLR   float64
}

// Validate reports a schedule that cannot run, with the flag to fix.
func (s Schedule) Validate() error {
	switch s.Kind {
	case ScheduleStep, ScheduleCosine, ScheduleOneCycle:
	default:
		return fmt.Errorf("-schedule %q: want step, cosine or onecycle", s.Kind)
	}
	if !(s.LR > 0) || math.IsInf(s.LR, 0) {
		return fmt.Errorf("-lr %v: want a positive learning rate", s.LR)
	}
	if s.Total < 1 {
		return fmt.Errorf("the run has %d iterations; want at least 1", s.Total)
	}
	if s.Warmup < 0 || s.Warmup >= s.Total {
		return fmt.Errorf("-warmup %d: want 0 to %d (fewer than the run's iterations)", s.Warmup, s.Total-1)
	}
	if s.Warmup > 0 && (!(s.WarmupLR > 0) || math.IsInf(s.WarmupLR, 0)) {
		return fmt.Errorf("-warmup-lr %v: want a positive learning rate", s.WarmupLR)
	}
	if s.Kind != ScheduleStep && len(s.Milestones) > 0 {
		return fmt.Errorf("-milestones apply to -schedule step, not %s", s.Kind)
	}
	for i, m := range s.Milestones {
		if m < 1 || m >= s.Total {
			return fmt.Errorf("-milestones: %d is not inside the run's %d iterations", m, s.Total)
		}
		if i > 0 && m <= s.Milestones[i-1] {
			return fmt.Errorf("-milestones: %d after %d; want increasing iterations", m, s.Milestones[i-1])
		}
	}
	return nil
}

// At returns the learning rate of iteration k (0-based: the step that takes
// the run from k to k+1 iterations).
func (s Schedule) At(k int64) float64 {
	if k < s.Warmup {
		return s.WarmupLR
	}
	switch s.Kind {
	case ScheduleCosine:
		return s.LR * (1 + math.Cos(math.Pi*s.phase(k))) / 2
	case ScheduleOneCycle:
		p := s.phase(k)
		lo, end := s.LR/oneCycleDiv, s.LR/oneCycleDiv/oneCycleFinalDiv
		if p < oneCycleRise {
			return lo + (s.LR-lo)*(1-math.Cos(math.Pi*p/oneCycleRise))/2
		}
		return end + (s.LR-end)*(1+math.Cos(math.Pi*(p-oneCycleRise)/(1-oneCycleRise)))/2
	default:
		lr := s.LR
		for _, m := range s.Milestones {
			if k >= m {
				lr /= 10
			}
		}
		return lr
	}
}

// phase is how far iteration k is through the part of the run after the
// warmup, from 0 (its first iteration) to 1 (the end of the run).
func (s Schedule) phase(k int64) float64 {
	return float64(k-s.Warmup) / float64(s.Total-s.Warmup)
}

// String describes the schedule in a line.
func (s Schedule) String() string {
	d := fmt.Sprintf("lr %g %s", s.LR, s.Kind)
	if s.Kind == ScheduleStep && len(s.Milestones) > 0 {
		d += " /10 at " + joinInts(s.Milestones)
	}
	if s.Warmup > 0 {
		d += fmt.Sprintf(", warmup %d at %g", s.Warmup, s.WarmupLR)
	}
	return d
}
