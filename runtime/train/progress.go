package train

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// lossWindow is the number of recent steps whose mean loss the progress bar
// shows.
const lossWindow = 50

// reporter shows a run's progress: a progress bar on a terminal, plain lines
// every -log-every iterations otherwise.
type reporter struct {
	w     io.Writer
	flops float64                  // per image, of a training step
	bar   *progressbar.ProgressBar // nil when not a terminal
	total int64

	losses [lossWindow]float64 // ring of the recent losses
	nloss  int
}

// newReporter starts reporting a run of total iterations, start of them done.
func newReporter(w io.Writer, terminal bool, start, total int64, flopsPerImage float64) *reporter {
	r := &reporter{w: w, total: total, flops: flopsPerImage}
	if terminal {
		r.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			// The description has the ETA, with the evaluations counted.
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
		r.bar.Set64(start)
	}
	return r
}

// loss records the loss of a step.
func (r *reporter) loss(l float64) {
	r.losses[r.nloss%lossWindow] = l
	r.nloss++
}

// meanLoss is the mean loss of the recent steps.
func (r *reporter) meanLoss() float64 {
	n := min(r.nloss, lossWindow)
	if n == 0 {
		return 0
	}
	var s float64
	for _, l := range r.losses[:n] {
		s += l
	}
	return s / float64(n)
}

// step shows iteration done on the bar, with the running loss, the rate,
// the throughput and the time left.
func (r *reporter) step(done int64, lr, imagesPerS float64, eta time.Duration) {
	if r.bar == nil {
		return
	}
	r.bar.Describe(fmt.Sprintf("loss %.4f lr %.4g %.0f img/s ETA %s", r.meanLoss(), lr, imagesPerS, roundDuration(eta)))
	r.bar.Set64(done)
}

// point prints a logged point as a line when there is no bar.
func (r *reporter) point(p Point, eta time.Duration) {
	if r.bar != nil {
		return
	}
	fmt.Fprintf(r.w, "iter %d/%d epoch %.2f loss %.4f train-error %.2f%% lr %.4g %.0f img/s (%.1f GFLOP/s) elapsed %s ETA %s\n",
		p.Iter, r.total, p.Epoch, p.TrainLoss, p.TrainError, p.LR, p.ImagesPerS, p.ImagesPerS*r.flops/1e9,
		roundDuration(time.Duration(p.ElapsedS*float64(time.Second))), roundDuration(eta))
}

// line prints a message, above the bar on a terminal.
func (r *reporter) line(format string, args ...any) {
	if r.bar != nil {
		r.bar.Clear()
	}
	fmt.Fprintf(r.w, format+"\n", args...)
}

// finish ends the bar.
func (r *reporter) finish() {
	if r.bar != nil && !r.bar.IsFinished() {
		r.bar.Exit()
		fmt.Fprintln(r.w)
	}
}

// roundDuration rounds d for display: to seconds, or minutes past an hour.
func roundDuration(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
