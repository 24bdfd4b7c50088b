package train

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func TestScheduleValues(t *testing.T) {
	paper := Schedule{Kind: ScheduleStep, LR: 0.1, Total: 64000, Milestones: []int64{32000, 48000}}
	warm := paper
	warm.Warmup, warm.WarmupLR = 400, 0.01
	cos := Schedule{Kind: ScheduleCosine, LR: 0.1, Total: 100}
	cosWarm := Schedule{Kind: ScheduleCosine, LR: 0.1, Total: 110, Warmup: 10, WarmupLR: 0.02}
	one := Schedule{Kind: ScheduleOneCycle, LR: 0.1, Total: 100}
	for _, c := range []struct {
		name string
		s    Schedule
		k    int64
		want float64
	}{
		{"step first", paper, 0, 0.1},
		{"step before 32k", paper, 31999, 0.1},
		{"step at 32k", paper, 32000, 0.01},
		{"step before 48k", paper, 47999, 0.01},
		{"step at 48k", paper, 48000, 0.001},
		{"step last", paper, 63999, 0.001},
		{"warmup first", warm, 0, 0.01},
		{"warmup last", warm, 399, 0.01},
		{"after warmup", warm, 400, 0.1},
		{"warmup keeps milestones", warm, 32000, 0.01},
		{"cosine start", cos, 0, 0.1},
		{"cosine middle", cos, 50, 0.05},
		{"cosine quarter", cos, 25, 0.1 * (1 + math.Sqrt2/2) / 2},
		{"cosine last step", cos, 99, 0.1 * (1 + math.Cos(math.Pi*0.99)) / 2},
		{"cosine end", cos, 100, 0},
		{"cosine warmup", cosWarm, 9, 0.02},
		{"cosine after warmup", cosWarm, 10, 0.1},
		{"cosine warmup middle", cosWarm, 60, 0.05},
		{"onecycle start", one, 0, 0.1 / 25},
		{"onecycle rising middle", one, 15, 0.1/25 + (0.1-0.1/25)/2},
		{"onecycle peak", one, 30, 0.1},
		{"onecycle falling middle", one, 65, 0.1/25e4 + (0.1-0.1/25e4)/2},
		{"onecycle end", one, 100, 0.1 / 25e4},
	} {
		if got := c.s.At(c.k); !near(got, c.want) {
			t.Errorf("%s: At(%d) = %.17g, want %.17g", c.name, c.k, got, c.want)
		}
	}
	// The last step of a cosine run is small but not zero, and the rate
	// never rises.
	prev := math.Inf(1)
	for k := range int64(100) {
		lr := cos.At(k)
		if lr <= 0 || lr > prev {
			t.Fatalf("cosine At(%d) = %g after %g", k, lr, prev)
		}
		prev = lr
	}
}

func TestScheduleValidate(t *testing.T) {
	ok := Schedule{Kind: ScheduleStep, LR: 0.1, Total: 100, Milestones: []int64{50, 75}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*Schedule)
		want string
	}{
		{"kind", func(s *Schedule) { s.Kind = "linear" }, `-schedule "linear"`},
		{"lr", func(s *Schedule) { s.LR = 0 }, "-lr 0"},
		{"lr nan", func(s *Schedule) { s.LR = math.NaN() }, "-lr NaN"},
		{"total", func(s *Schedule) { s.Total = 0 }, "0 iterations"},
		{"warmup too long", func(s *Schedule) { s.Warmup = 100; s.WarmupLR = 0.01 }, "-warmup 100"},
		{"warmup lr", func(s *Schedule) { s.Warmup = 10 }, "-warmup-lr 0"},
		{"milestone beyond", func(s *Schedule) { s.Milestones = []int64{50, 100} }, "100 is not inside"},
		{"milestone zero", func(s *Schedule) { s.Milestones = []int64{0} }, "0 is not inside"},
		{"milestones order", func(s *Schedule) { s.Milestones = []int64{75, 50} }, "50 after 75"},
		{"milestones cosine", func(s *Schedule) { s.Kind = ScheduleCosine }, "apply to -schedule step"},
	} {
		s := ok
		s.Milestones = slices.Clone(ok.Milestones)
		c.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestDefaultMilestones(t *testing.T) {
	for _, c := range []struct {
		total  int64
		scaled bool
		want   []int64
	}{
		{64000, false, []int64{32000, 48000}},
		{64000, true, []int64{32000, 48000}},
		{20, true, []int64{10, 15}},
		{391 * 164, true, []int64{32062, 48093}}, // 164 epochs of 50000 at batch 128
		{3, true, []int64{2}},                    // round(1.5) = 2, round(2.25) = 2: one milestone
		{1, true, nil},
	} {
		if got := defaultMilestones(c.total, c.scaled); !slices.Equal(got, c.want) {
			t.Errorf("defaultMilestones(%d, %v) = %v, want %v", c.total, c.scaled, got, c.want)
		}
	}
	if got, _ := itersOf(164, 50000, 128); got != 64063 {
		t.Errorf("itersOf(164 epochs) = %d, want ceil(164*50000/128) = 64063", got)
	}
}

func TestEvalDue(t *testing.T) {
	// 100 images at batch 8: epochs end during iterations 13 (104 images),
	// 25 (200), 38 (304).
	var got []int64
	for done := int64(1); done <= 40; done++ {
		if evalDue(done, 0, 8, 100) {
			got = append(got, done)
		}
	}
	if want := []int64{13, 25, 38}; !slices.Equal(got, want) {
		t.Errorf("evaluations at %v, want %v", got, want)
	}
	if !evalDue(30, 10, 8, 100) || evalDue(31, 10, 8, 100) {
		t.Error("-eval-every 10 does not evaluate at multiples of 10 only")
	}
	// An epoch of 2000 batches is evaluated every 1000 as well.
	if !evalDue(1000, 0, 1, 2000) || !evalDue(2000, 0, 1, 2000) || evalDue(1500, 0, 1, 2000) {
		t.Error("long epochs are not evaluated every 1000 iterations")
	}
}
