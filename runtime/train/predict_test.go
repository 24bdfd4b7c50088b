package train

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writePNG writes a w x h image of one colour.
func writePNG(t *testing.T, path string, w, h int, c color.RGBA) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// firstPixels returns logits read from each image's normalized pixels:
// logit c = x[c*stride], or 0 past the image.
func firstPixels(batch, imgLen, classes, stride int) func(x []float32) []float32 {
	return func(x []float32) []float32 {
		z := make([]float32, batch*classes)
		for i := range batch {
			for c := range classes {
				if c*stride < imgLen {
					z[i*classes+c] = x[i*imgLen+c*stride]
				}
			}
		}
		return z
	}
}

// softmaxOf is the probability of class c of logits, computed directly.
func softmaxOf(logits []float64, c int) float64 {
	var z float64
	for _, l := range logits {
		z += math.Exp(l)
	}
	return math.Exp(logits[c]) / z
}

func TestPredictImages(t *testing.T) {
	te := newTestEnv()
	// logits: the first pixel of the red, green and blue planes, over 100,
	// and 0 for the fourth class.
	net := fakeNet("tiny-linear", 4, 4, 3, 4, 8, nil, func(m *fakeModel) { m.infer = firstPixels(8, 48, 4, 16) })
	m, _ := net.New(1, 1)
	dir := t.TempDir()
	ck := filepath.Join(dir, "c.safetensors")
	writeCheckpoint(t, m, ck, "tiny", []float32{0, 0, 0}, []float32{100, 100, 100}, []string{"red", "green", "blue", "dark"})
	red, blue, big := filepath.Join(dir, "red.png"), filepath.Join(dir, "blue.png"), filepath.Join(dir, "big-green.png")
	writePNG(t, red, 4, 4, color.RGBA{200, 10, 10, 255})
	writePNG(t, blue, 4, 4, color.RGBA{10, 20, 150, 255})
	writePNG(t, big, 12, 8, color.RGBA{0, 250, 0, 255}) // center-cropped to 8x8 and resized
	if code := te.run(net, "predict", "-ckpt", ck, red, blue, big); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	got := lines(te.out.String())
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(got), te.out.String())
	}
	for i, c := range []struct {
		name, class string
		p           float64
	}{
		{"red.png", "red (0)", softmaxOf([]float64{2, 0.1, 0.1, 0}, 0)},
		{"blue.png", "blue (2)", softmaxOf([]float64{0.1, 0.2, 1.5, 0}, 2)},
		{"big-green.png", "green (1)", softmaxOf([]float64{0, 2.5, 0, 0}, 1)},
	} {
		f := strings.Fields(got[i])
		if len(f) != 4 || f[0] != c.name || f[1]+" "+f[2] != c.class || f[3] != fmt.Sprintf("p=%.4f", c.p) {
			t.Errorf("line %q, want %s %s p=%.4f", got[i], c.name, c.class, c.p)
		}
	}
}

func TestPredictCIFARRecords(t *testing.T) {
	te := newTestEnv()
	// A CIFAR-shaped network whose logit c is the c-th red pixel of the
	// image, over 10.
	net := fakeNet("cifar-linear", 32, 32, 3, 10, 8, nil, func(m *fakeModel) { m.infer = firstPixels(8, 3072, 10, 1) })
	m, _ := net.New(1, 1)
	dir := t.TempDir()
	ck := filepath.Join(dir, "c.safetensors")
	names := []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
	writeCheckpoint(t, m, ck, "synthetic", []float32{0, 0, 0}, []float32{10, 10, 10}, names)
	// Three records: labels 3, 7, 1; predicted 3 (right), 2 (wrong), 1.
	recs := []struct {
		label byte
		red   []byte
	}{
		{3, []byte{0, 0, 0, 30, 10}},
		{7, []byte{0, 5, 20, 0, 0, 0, 0, 15}},
		{1, []byte{0, 12}},
	}
	var b []byte
	for _, r := range recs {
		rec := make([]byte, cifar10Record)
		rec[0] = r.label
		copy(rec[1:], r.red)
		b = append(b, rec...)
	}
	bin := filepath.Join(dir, "test_batch.bin")
	if err := os.WriteFile(bin, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logits := func(red []byte) []float64 {
		z := make([]float64, 10)
		for i, v := range red {
			z[i] = float64(v) / 10
		}
		return z
	}
	want := []string{
		fmt.Sprintf("test_batch.bin#0 cat (3) p=%.4f true cat (3) right", softmaxOf(logits(recs[0].red), 3)),
		fmt.Sprintf("test_batch.bin#1 bird (2) p=%.4f true horse (7) wrong", softmaxOf(logits(recs[1].red), 2)),
		fmt.Sprintf("test_batch.bin#2 automobile (1) p=%.4f true automobile (1) right", softmaxOf(logits(recs[2].red), 1)),
		"2 of 3 labelled records right (33.33% error)",
	}
	if code := te.run(net, "predict", "-ckpt", ck, bin); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	checkLines(t, te.out.String(), want)
	if code := te.run(net, "predict", "-ckpt", ck, "-records", "2,0", bin); code != 0 {
		t.Fatalf("exit %d: %s", code, te.errb.String())
	}
	checkLines(t, te.out.String(), []string{want[2], want[0], "2 of 2 labelled records right (0.00% error)"})
}

// checkLines compares output lines with want, blanks collapsed.
func checkLines(t *testing.T, out string, want []string) {
	t.Helper()
	got := lines(out)
	for i := range got {
		got[i] = strings.Join(strings.Fields(got[i]), " ")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
