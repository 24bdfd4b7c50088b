package train

import (
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/runtime/data"
)

func TestBadInput(t *testing.T) {
	te := newTestEnv()
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }

	// Datasets the network cannot take, and one the run was not trained on.
	big, bigTest := tinySets("big", 1, 32, 32, 4, 16, 8)
	te.sets["big"] = [2]*data.Set{big, bigTest}
	five, fiveTest := tinySets("five", 1, 4, 4, 5, 16, 8)
	te.sets["five"] = [2]*data.Set{five, fiveTest}
	other, otherTest := tinySets("tiny2", 2, 4, 4, 4, 96, 40)
	te.sets["tiny2"] = [2]*data.Set{other, otherTest}

	// A good checkpoint, and broken ones.
	net := tinyNet(nil, nil)
	goodDir := path("good")
	if code := te.run(net, "train", "-data", "tiny", "-iters", "8", "-out", goodDir); code != 0 {
		t.Fatalf("train: exit %d: %s", code, te.errb.String())
	}
	good := ckptPath(goodDir)
	otherNet := fakeNet("other", 4, 4, 3, 4, 8, nil, nil)
	om, _ := otherNet.New(1, 1)
	writeCheckpoint(t, om, path("other.safetensors"), "tiny", []float32{0, 0, 0}, []float32{1, 1, 1}, nil)
	nm, _ := net.New(1, 1)
	if err := nm.Save(path("nometa.safetensors"), nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	os.WriteFile(path("corrupt.safetensors"), b[:len(b)-10], 0o644)
	os.WriteFile(path("garbage"), []byte("hello, world: neither an image nor records"), 0o644)
	os.WriteFile(path("bad.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	os.WriteFile(path("data_batch_1.bin"), make([]byte, 2*cifar10Record), 0o644)
	writePNG(t, path("x.png"), 4, 4, color.RGBA{1, 2, 3, 255})

	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"fit"}, 2, `unknown command "fit"; want one of train, eval, predict, runs`},
		{"unknown flag", []string{"train", "-itrs", "5"}, 2, "flag provided but not defined: -itrs"},
		{"not a number", []string{"train", "-iters", "x"}, 2, `invalid value "x" for flag -iters`},
		{"iters", []string{"train", "-iters", "0"}, 2, "-iters 0: want at least 1"},
		{"iters and epochs", []string{"train", "-iters", "10", "-epochs", "2"}, 2, "give -iters or -epochs, not both"},
		{"epochs", []string{"train", "-epochs", "-1"}, 2, "-epochs -1: want a positive number"},
		{"lr", []string{"train", "-lr", "-0.1"}, 2, "-lr -0.1: want a positive learning rate"},
		{"schedule", []string{"train", "-schedule", "poly"}, 2, `-schedule "poly": want step, cosine or onecycle`},
		{"milestones syntax", []string{"train", "-milestones", "1,x"}, 2, `-milestones: "x" is not a non-negative integer`},
		{"milestones order", []string{"train", "-data", "tiny", "-iters", "20", "-milestones", "15,5"}, 2, "-milestones: 5 after 15"},
		{"milestones beyond", []string{"train", "-data", "tiny", "-iters", "20", "-milestones", "25"}, 2, "-milestones: 25 is not inside the run's 20 iterations"},
		{"milestones cosine", []string{"train", "-schedule", "cosine", "-milestones", "5"}, 2, "-milestones apply to -schedule step, not cosine"},
		{"warmup", []string{"train", "-data", "tiny", "-iters", "20", "-warmup", "20"}, 2, "-warmup 20: want 0 to 19"},
		{"warmup lr", []string{"train", "-warmup-lr", "0"}, 2, "-warmup-lr 0"},
		{"threads", []string{"train", "-threads", "0"}, 2, "-threads 0"},
		{"ckpt-every", []string{"train", "-ckpt-every", "0"}, 2, "-ckpt-every 0"},
		{"log-every", []string{"train", "-log-every", "0"}, 2, "-log-every 0"},
		{"eval-every", []string{"train", "-eval-every", "-1"}, 2, "-eval-every -1"},
		{"data and download", []string{"train", "-data", "tiny", "-download", "cifar-10"}, 2, "give -data or -download, not both"},
		{"download name", []string{"train", "-download", "mnist"}, 2, `-download "mnist": want cifar-10 or cifar-100`},
		{"download fails", []string{"train", "-download", "cifar-10"}, 1, "download cifar-10: no network here"},
		{"argument", []string{"train", "tiny"}, 2, `unexpected argument "tiny"`},
		{"missing data", []string{"train", "-data", path("nowhere")}, 1, path("nowhere")},
		{"image shape", []string{"train", "-data", "big"}, 1, "big/train has 32x32x3 images; network tiny-linear takes 4x4x3"},
		{"classes", []string{"train", "-data", "five"}, 1, "five/train has 5 classes; network tiny-linear has 4"},
		{"out taken", []string{"train", "-data", "tiny", "-out", goodDir}, 1, goodDir + " already holds a run's checkpoint: continue it with -resume " + good},
		{"resume missing", []string{"train", "-resume", path("none.safetensors")}, 1, "no such file"},
		{"resume garbage", []string{"train", "-resume", path("garbage")}, 1, path("garbage") + ": not a checkpoint"},
		{"resume other network", []string{"train", "-resume", path("other.safetensors")}, 1, `is a checkpoint of network "other", not "tiny-linear"`},
		{"resume no run", []string{"train", "-resume", path("nometa.safetensors")}, 1, "not a training checkpoint"},
		{"resume corrupt", []string{"train", "-resume", path("corrupt.safetensors")}, 1, path("corrupt.safetensors")},
		{"resume lr", []string{"train", "-resume", good, "-lr", "0.5"}, 2, "-lr 0.5 differs from the checkpoint's 0.1"},
		{"resume seed", []string{"train", "-resume", good, "-seed", "2"}, 2, "-seed 2 differs from the checkpoint's 1"},
		{"resume iters", []string{"train", "-resume", good, "-iters", "9"}, 2, "-iters 9 differs from the checkpoint's 8"},
		{"resume epochs", []string{"train", "-resume", good, "-epochs", "5"}, 2, "-epochs 5 (60 iterations) differs from the checkpoint's 8 iterations"},
		{"resume milestones", []string{"train", "-resume", good, "-milestones", "3"}, 2, "-milestones 3 differs from the checkpoint's 4,6"},
		{"resume augment", []string{"train", "-resume", good, "-augment=false"}, 2, "-augment false differs"},
		{"resume other data", []string{"train", "-resume", good, "-data", "tiny2"}, 1, "-data tiny2 is not the data the run was trained on"},
		{"eval without ckpt", []string{"eval"}, 2, "-ckpt is required"},
		{"eval missing", []string{"eval", "-ckpt", path("none")}, 1, "no such file"},
		{"eval other network", []string{"eval", "-ckpt", path("other.safetensors")}, 1, `network "other"`},
		{"eval corrupt", []string{"eval", "-ckpt", path("corrupt.safetensors")}, 1, path("corrupt.safetensors")},
		{"eval garbage", []string{"eval", "-ckpt", path("garbage")}, 1, "not a checkpoint"},
		{"eval data", []string{"eval", "-ckpt", good, "-data", "five"}, 1, "five/train has 5 classes"},
		{"eval argument", []string{"eval", "-ckpt", good, "x"}, 2, `unexpected argument "x"`},
		{"predict without ckpt", []string{"predict", path("x.png")}, 2, "-ckpt is required"},
		{"predict no files", []string{"predict", "-ckpt", good}, 2, "no FILE to classify"},
		{"predict missing file", []string{"predict", "-ckpt", good, path("none.png")}, 1, "no such file"},
		{"predict garbage", []string{"predict", "-ckpt", good, path("garbage")}, 1, "not a PNG or JPEG image, nor a CIFAR binary file"},
		{"predict bad png", []string{"predict", "-ckpt", good, path("bad.png")}, 1, path("bad.png")},
		{"predict CIFAR on 4x4", []string{"predict", "-ckpt", good, path("data_batch_1.bin")}, 1, "CIFAR records are 32x32x3 images; network tiny-linear takes 4x4x3"},
		{"predict records of an image", []string{"predict", "-ckpt", good, "-records", "1", path("x.png")}, 2, "-records applies to CIFAR binary files"},
		{"predict records syntax", []string{"predict", "-ckpt", good, "-records", "-1", path("x.png")}, 2, `-records: "-1"`},
		{"predict without statistics", []string{"predict", "-ckpt", path("nometa.safetensors"), path("x.png")}, 1, "holds no input statistics"},
		{"predict other network", []string{"predict", "-ckpt", path("other.safetensors"), path("x.png")}, 1, `network "other"`},
		{"runs n", []string{"runs", "-n", "0"}, 2, "-n 0: want at least 1"},
		{"runs resume", []string{"runs", "-resume", good}, 2, "-resume applies to train"},
		{"runs flags", []string{"runs", "-lr", "0"}, 2, "-lr 0"},
	} {
		code := te.run(net, c.args...)
		stderr := te.errb.String()
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, code, stderr, c.code, c.want)
			continue
		}
		if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
			t.Errorf("%s: the error is not one line: %q", c.name, stderr)
		}
	}

	// Nothing was trained over the good run.
	if s := readCheckpoint(t, good).Metadata["step"]; s != "8" {
		t.Errorf("the good checkpoint is at step %s, want 8", s)
	}
}

func TestUsage(t *testing.T) {
	te := newTestEnv()
	net := tinyNet(nil, nil)
	if code := te.run(net); code != 2 || !strings.Contains(te.errb.String(), "trainer train [flags]") {
		t.Errorf("no arguments: exit %d, stderr %q", code, te.errb.String())
	}
	if code := te.run(net, "-h"); code != 0 || !strings.Contains(te.out.String(), "trainer predict -ckpt PATH [flags] FILE...") {
		t.Errorf("-h: exit %d, stdout %q", code, te.out.String())
	}
	if code := te.run(net, "train", "-h"); code != 0 {
		t.Fatalf("train -h: exit %d", code)
	}
	help := te.out.String()
	for _, want := range []string{
		"-iters int", "(default 64000)", "-lr float", "(default 0.1)", "-schedule string", `(default "step")`,
		"32000,48000", "400 iterations at 0.01", "-augment", "(default true)", "-ckpt-every int", "(default 1000)",
		"-resume string", "-eval-every int", "-log-every int", "(default 100)", "-download string", "-coarse", "-warmup-lr float", "(default 0.01)",
		"-threads int", "-seed uint", "-out string", "-epochs float", "-milestones string", "-data string", `(default "synthetic")`,
	} {
		if !strings.Contains(help, want) {
			t.Errorf("train -h lacks %q:\n%s", want, help)
		}
	}
	if te.errb.Len() != 0 {
		t.Errorf("train -h wrote to stderr: %q", te.errb.String())
	}
	for _, cmd := range []string{"eval", "predict", "runs"} {
		if code := te.run(net, cmd, "-h"); code != 0 || !strings.Contains(te.out.String(), "usage: trainer "+cmd) {
			t.Errorf("%s -h: exit %d, stdout %q", cmd, code, te.out.String())
		}
	}
	if code := te.run(net, "runs", "-h"); code != 0 || !strings.Contains(te.out.String(), "-n int") || !strings.Contains(te.out.String(), "(default 5)") {
		t.Errorf("runs -h does not list -n:\n%s", te.out.String())
	}
	bad := net
	bad.New = nil
	if code := te.run(bad, "train"); code != 1 || !strings.Contains(te.errb.String(), "has no constructor") {
		t.Errorf("a network without New: exit %d, %q", code, te.errb.String())
	}
}
