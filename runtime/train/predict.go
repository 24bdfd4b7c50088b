package train

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"text/tabwriter"

	"github.com/resnetc/resnetc/runtime/data"
)

// CIFAR binary records: a label byte (CIFAR-10) or a coarse and a fine
// label byte (CIFAR-100), then a 32x32 image, CHW.
const (
	cifarSide      = 32
	cifarPixels    = 3 * cifarSide * cifarSide
	cifar10Record  = 1 + cifarPixels
	cifar100Record = 2 + cifarPixels
)

// item is one image to classify.
type item struct {
	name  string
	img   []byte // C x H x W
	label int32  // the true class, or -1
}

// predict is the predict command.
func (e *env) predict(net Network, args []string) error {
	fs := e.newFlagSet("predict", "-ckpt PATH [flags] FILE...",
		"Classifies PNG/JPEG images (center-cropped and resized to the network's input) or the records of CIFAR binary\n"+
			"files: for each, the top class, its softmax probability and, for CIFAR records, the true label.\n"+
			"Images are normalized with the statistics stored in the checkpoint.")
	ckpt := fs.String("ckpt", "", "the checkpoint (required)")
	records := fs.String("records", "", "CIFAR files: the records to classify, e.g. 0,5,9 (default all)")
	threads := fs.Int("threads", goruntime.GOMAXPROCS(0), "threads of inference")
	if err := fs.parse(args); err != nil {
		return err
	}
	switch {
	case *ckpt == "":
		return usageError{"-ckpt is required"}
	case fs.NArg() == 0:
		return usageError{"no FILE to classify"}
	case *threads < 1:
		return usageError{fmt.Sprintf("-threads %d: want at least 1", *threads)}
	}
	recs, err := parseInts(*records)
	if err != nil {
		return usageError{"-records: " + err.Error()}
	}
	meta, err := readMeta(*ckpt)
	if err != nil {
		return err
	}
	if err := checkNetwork(*ckpt, meta, net); err != nil {
		return err
	}
	mean, std, ok, err := decodeNormalization(meta, net.Channels)
	if err != nil {
		return fmt.Errorf("%s: %v", *ckpt, err)
	}
	if !ok {
		return fmt.Errorf("%s holds no input statistics (mean, std): not a checkpoint written by train", *ckpt)
	}
	names, err := decodeClassNames(meta, net.Classes)
	if err != nil {
		return fmt.Errorf("%s: %v", *ckpt, err)
	}
	cfg, err := trainedOn(*ckpt, meta)
	if err != nil {
		return err
	}
	var items []item
	anyCIFAR := false
	for _, path := range fs.Args() {
		its, isCIFAR, err := readItems(path, net, recs, cfg.Coarse || net.Classes == 20)
		if err != nil {
			return err
		}
		anyCIFAR = anyCIFAR || isCIFAR
		items = append(items, its...)
	}
	if len(recs) > 0 && !anyCIFAR {
		return usageError{"-records applies to CIFAR binary files, and no FILE is one"}
	}
	m, err := net.New(*threads, 0)
	if err != nil {
		return fmt.Errorf("creating network %s: %v", net.Name, err)
	}
	defer m.Close()
	if _, err := m.Load(*ckpt); err != nil {
		return err
	}

	className := func(c int) string {
		if names != nil {
			return fmt.Sprintf("%s (%d)", names[c], c)
		}
		return fmt.Sprintf("class %d", c)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	imgLen := net.Channels * net.Height * net.Width
	x := make([]float32, net.Batch*imgLen)
	labelled, right := 0, 0
	for b := 0; b < len(items); b += net.Batch {
		n := min(net.Batch, len(items)-b)
		for i := range net.Batch {
			it := items[b+min(i, n-1)]
			normalize(x[i*imgLen:(i+1)*imgLen], it.img, mean, std, net.Height*net.Width)
		}
		logits, err := m.Infer(x)
		if err != nil {
			return err
		}
		for i := range n {
			it := items[b+i]
			row := logits[i*net.Classes : (i+1)*net.Classes]
			top := argmax(row)
			p := softmax(row)[top]
			fmt.Fprintf(tw, "%s\t%s\tp=%.4f", it.name, className(top), p)
			if it.label >= 0 {
				labelled++
				verdict := "wrong"
				if int(it.label) == top {
					right++
					verdict = "right"
				}
				fmt.Fprintf(tw, "\ttrue %s\t%s", className(int(it.label)), verdict)
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	if labelled > 0 {
		fmt.Fprintf(e.stdout, "%d of %d labelled records right (%.2f%% error)\n", right, labelled, 100*float64(labelled-right)/float64(labelled))
	}
	return nil
}

// normalize writes the float32 input of an image of C planes of plane
// pixels: (pixel - mean[c]) / std[c], rounded from float64 as the data
// pipeline rounds it.
func normalize(dst []float32, img []byte, mean, std []float32, plane int) {
	for i, p := range img {
		c := i / plane
		dst[i] = float32((float64(p) - float64(mean[c])) / float64(std[c]))
	}
}

// readItems reads the images of one FILE: a PNG or JPEG image, or the
// records of a CIFAR binary file (recs picks them; all when empty).
// coarse picks CIFAR-100's coarse label as the true one.
func readItems(path string, net Network, recs []int64, coarse bool) ([]item, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	name := filepath.Base(path)
	if bytes.HasPrefix(b, []byte("\x89PNG")) || bytes.HasPrefix(b, []byte{0xff, 0xd8}) {
		if net.Channels != 3 {
			return nil, false, fmt.Errorf("%s: an RGB image; network %s takes %d channels", path, net.Name, net.Channels)
		}
		img, err := data.DecodeImage(bytes.NewReader(b), net.Height, net.Width)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %v", path, err)
		}
		return []item{{name: name, img: img, label: -1}}, false, nil
	}
	size := cifarRecordSize(len(b), net.Classes)
	if size == 0 {
		return nil, false, fmt.Errorf("%s: not a PNG or JPEG image, nor a CIFAR binary file (%d bytes is not a whole number of %d- or %d-byte records)", path, len(b), cifar10Record, cifar100Record)
	}
	if net.Channels != 3 || net.Height != cifarSide || net.Width != cifarSide {
		return nil, true, fmt.Errorf("%s: CIFAR records are %dx%dx3 images; network %s takes %dx%dx%d", path, cifarSide, cifarSide, net.Name, net.Height, net.Width, net.Channels)
	}
	n := int64(len(b) / size)
	if len(recs) == 0 {
		for i := range n {
			recs = append(recs, i)
		}
	}
	items := make([]item, 0, len(recs))
	for _, r := range recs {
		if r >= n {
			return nil, true, fmt.Errorf("%s: no record %d: the file has %d (0 to %d)", path, r, n, n-1)
		}
		rec := b[r*int64(size) : (r+1)*int64(size)]
		label := int32(rec[0])
		if size == cifar100Record && !coarse {
			label = int32(rec[1])
		}
		if int(label) >= net.Classes {
			return nil, true, fmt.Errorf("%s: record %d has label %d, not a class of network %s (%d classes)", path, r, label, net.Name, net.Classes)
		}
		items = append(items, item{name: fmt.Sprintf("%s#%d", name, r), img: rec[size-cifarPixels:], label: label})
	}
	return items, true, nil
}

// cifarRecordSize recognizes a CIFAR binary file by its size: a whole
// number of CIFAR-10 or CIFAR-100 records; if both, the network's classes
// decide. 0 means neither.
func cifarRecordSize(n, classes int) int {
	if n == 0 {
		return 0
	}
	is10, is100 := n%cifar10Record == 0, n%cifar100Record == 0
	switch {
	case is10 && is100:
		if classes == 100 || classes == 20 {
			return cifar100Record
		}
		return cifar10Record
	case is10:
		return cifar10Record
	case is100:
		return cifar100Record
	}
	return 0
}
