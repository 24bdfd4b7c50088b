package data

import (
	"math"
	"os"
	"slices"
	"testing"
)

// TestRealCIFAR10 reads a CIFAR-10 release named by RESNETC_CIFAR10 (an
// archive or folder; skipped when unset) and checks it against published
// facts: counts, the first labels of data_batch_1 and its class counts. The
// channel statistics are those of the official data within 1 (a rebuilt
// copy may differ slightly).
func TestRealCIFAR10(t *testing.T) {
	p := os.Getenv("RESNETC_CIFAR10")
	if p == "" {
		t.Skip("RESNETC_CIFAR10 is not set")
	}
	train, test, err := Load(p, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if train.Name != "cifar-10/train" || train.N != 50000 || test.N != 10000 {
		t.Fatalf("%s: %d and %d images", train.Name, train.N, test.N)
	}
	if want := []int32{6, 9, 9, 4, 1, 1, 2, 7, 8, 3, 4, 7, 7, 2, 9, 9, 9, 3, 2, 6}; !slices.Equal(train.Labels[:20], want) {
		t.Errorf("first labels %v, want %v", train.Labels[:20], want)
	}
	counts := make([]int, 10)
	for _, l := range train.Labels[:10000] {
		counts[l]++
	}
	if want := []int{1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981}; !slices.Equal(counts, want) {
		t.Errorf("data_batch_1 class counts %v, want %v", counts, want)
	}
	if train.ClassNames[0] != "airplane" || train.ClassNames[9] != "truck" {
		t.Errorf("class names %q", train.ClassNames)
	}
	mean, std := ChannelStats(train)
	wantMean, wantStd := []float64{125.3, 123.0, 113.9}, []float64{63.0, 62.1, 66.7}
	for c := range 3 {
		if math.Abs(float64(mean[c])-wantMean[c]) > 1 || math.Abs(float64(std[c])-wantStd[c]) > 1 {
			t.Errorf("channel %d: mean %.2f std %.2f, want about %.1f and %.1f", c, mean[c], std[c], wantMean[c], wantStd[c])
		}
	}
	t.Logf("mean %v std %v", mean, std)
}
