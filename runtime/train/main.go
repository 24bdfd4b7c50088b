package train

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/resnetc/resnetc/runtime/data"
)

// Model is what a generated package's *Model provides.
type Model interface {
	TrainStep(x []float32, labels []int32, lr float32) (float32, error)
	Infer(x []float32) ([]float32, error)
	Logits() []float32
	Save(path string, extra map[string]string) error
	Load(path string) (map[string]string, error)
	Step() int64
	SetStep(n int64)
	Init(seed uint64)
	Close()
}

// Network describes a generated network.
type Network struct {
	Name, Arch                              string
	Batch, Height, Width, Channels, Classes int
	TrainFLOPs                              float64
	Momentum, WeightDecay                   float64 // compiled into the step
	New                                     func(threads int, seed uint64) (Model, error)
}

// Exit statuses of Main.
const (
	exitOK          = 0
	exitError       = 1   // bad input or a failure
	exitUsage       = 2   // a bad command line
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM, after saving a checkpoint
)

// errInterrupted is returned by a training stopped by a signal; its
// checkpoint is saved and the message printed.
var errInterrupted = errors.New("interrupted")

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// env is what a command touches outside the process's memory, so that
// tests can replace the data source and the stop signal.
type env struct {
	prog           string // the program's name, for messages on how to go on
	stdout, stderr io.Writer
	terminal       bool // stdout is a terminal: draw a progress bar
	// notify starts listening for a stop request: the channel is closed on
	// the first one; release stops listening.
	notify   func() (stop <-chan struct{}, release func())
	loadData func(spec string, coarse bool) (train, test *data.Set, err error)
	download func(name string, progress io.Writer) (path string, err error)
	now      func() time.Time
	// stallShare is the share of the step time spent waiting for data
	// above which the trainer warns (once).
	stallShare float64
}

// Main runs the trainer's command line (args without the program name) and
// returns the exit status: 0, 1 on an error, 2 on a bad command line, 130
// when training was interrupted (after saving a checkpoint).
func Main(net Network, args []string, stdout, stderr io.Writer) int {
	e := &env{
		prog:       filepath.Base(os.Args[0]),
		stdout:     stdout,
		stderr:     stderr,
		terminal:   isTerminal(stdout),
		notify:     signalStop,
		loadData:   loadData,
		download:   func(name string, w io.Writer) (string, error) { return data.Download(name, "", w) },
		now:        time.Now,
		stallShare: 0.1,
	}
	return e.main(net, args)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// signalStop turns the first SIGINT or SIGTERM into a closed channel and
// restores the default handling, so that a second Ctrl-C ends the process
// at once.
func signalStop() (<-chan struct{}, func()) {
	sig := make(chan os.Signal, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			signal.Stop(sig)
			close(stop)
		case <-done:
		}
	}()
	return stop, func() {
		signal.Stop(sig)
		close(done)
	}
}

// loadData reads a dataset as runtime/data does.
func loadData(spec string, coarse bool) (*data.Set, *data.Set, error) {
	return data.Load(spec, data.LoadOptions{Coarse: coarse})
}

// commands are the subcommands, in the order usage lists them.
var commands = []struct {
	name, args, what string
	run              func(e *env, net Network, args []string) error
}{
	{"train", "[flags]", "train the network (the paper's CIFAR recipe by default)", (*env).train},
	{"eval", "-ckpt PATH [flags]", "test error of a checkpoint", (*env).eval},
	{"predict", "-ckpt PATH [flags] FILE...", "classify PNG/JPEG images or CIFAR binary records", (*env).predict},
	{"runs", "-n 5 [train flags]", "train with N seeds in sequence and report median and mean±std test error", (*env).runs},
}

// main dispatches to a subcommand and turns its error into a message and
// an exit status.
func (e *env) main(net Network, args []string) int {
	if err := net.check(); err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", e.prog, err)
		return exitError
	}
	if len(args) == 0 {
		e.usage(e.stderr, net)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		e.usage(e.stdout, net)
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(e, net, args[1:])
		var ue usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errInterrupted):
			return exitInterrupted
		case errors.As(err, &ue):
			fmt.Fprintf(e.stderr, "%s %s: %v (see %s %s -h)\n", e.prog, c.name, err, e.prog, c.name)
			return exitUsage
		default:
			fmt.Fprintf(e.stderr, "%s %s: %s\n", e.prog, c.name, oneLine(err.Error()))
			return exitError
		}
	}
	fmt.Fprintf(e.stderr, "%s: unknown command %q; want one of %s (see %s -h)\n", e.prog, args[0], commandNames(), e.prog)
	return exitUsage
}

// oneLine keeps the first line of a message: the errors shown to the user
// are one line each.
func oneLine(s string) string {
	first, _, more := strings.Cut(s, "\n")
	if more {
		return first + " ..."
	}
	return first
}

func commandNames() string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// usage lists the subcommands.
func (e *env) usage(w io.Writer, net Network) {
	fmt.Fprintf(w, "%s trains and runs the compiled network %s (batch %d, %dx%dx%d images, %d classes).\n\nusage:\n",
		e.prog, net.Name, net.Batch, net.Height, net.Width, net.Channels, net.Classes)
	for _, c := range commands {
		fmt.Fprintf(w, "  %s %s %s\n        %s\n", e.prog, c.name, c.args, c.what)
	}
	fmt.Fprintf(w, "\n'%s COMMAND -h' lists a command's flags with their defaults.\n", e.prog)
}

// check reports a Network a generated package could not have meant.
func (n Network) check() error {
	switch {
	case n.Name == "":
		return errors.New("the network has no name")
	case n.New == nil:
		return fmt.Errorf("network %s has no constructor", n.Name)
	case n.Batch < 1 || n.Height < 1 || n.Width < 1 || n.Channels < 1 || n.Classes < 2:
		return fmt.Errorf("network %s: batch %d, shape %dx%dx%d and %d classes are not a network's", n.Name, n.Batch, n.Height, n.Width, n.Channels, n.Classes)
	}
	return nil
}

// flagSet is a command's flags and what its usage says above them.
type flagSet struct {
	*flag.FlagSet
	e          *env
	args, what string
}

// newFlagSet returns a flag set whose parse errors come back as usage
// errors instead of being printed, and whose -h prints to stdout.
func (e *env) newFlagSet(name, args, what string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, e: e, args: args, what: what}
}

// parse parses args; -h prints the usage and gives flag.ErrHelp.
func (fs *flagSet) parse(args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		w := fs.e.stdout
		fmt.Fprintf(w, "usage: %s %s %s\n\n%s\n\nflags:\n", fs.e.prog, fs.Name(), fs.args, fs.what)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return err
	}
	if err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// given returns the names of the flags set on the command line.
func given(fs *flagSet) map[string]bool {
	m := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}
