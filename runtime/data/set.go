package data

import (
	"fmt"
	"math"
)

// Set is an in-memory labelled image dataset: N images of C x H x W bytes
// each, stored CHW (as the CIFAR binaries store them), labels in
// [0, Classes). Bytes rather than float32 keep CIFAR-10 at 150 MB; a Loader
// normalizes them as it fills a batch.
type Set struct {
	Name       string // "cifar-10/train", "synthetic/test"
	N, C, H, W int
	Classes    int
	ClassNames []string // may be nil
	Images     []byte   // N*C*H*W
	Labels     []int32  // N
	Coarse     []int32  // CIFAR-100 coarse labels (20 classes), nil otherwise
}

// Image returns the C*H*W bytes of image i, sharing storage with s.Images.
func (s *Set) Image(i int) []byte {
	n := s.C * s.H * s.W
	return s.Images[i*n : (i+1)*n : (i+1)*n]
}

// imageSize returns C*H*W.
func (s *Set) imageSize() int { return s.C * s.H * s.W }

// coarseClasses is the number of CIFAR-100 superclasses.
const coarseClasses = 20

// Validate checks that the fields of s agree with each other: the sizes of
// Images, Labels, Coarse and ClassNames, and every label's range. A Loader
// and EvalBatches rely on it, so a Set built by hand is checked once rather
// than failing inside a batch.
func (s *Set) Validate() error {
	if s == nil {
		return fmt.Errorf("data: nil set")
	}
	name := s.Name
	if name == "" {
		name = "set"
	}
	if s.N < 0 || s.C < 1 || s.H < 1 || s.W < 1 {
		return fmt.Errorf("%s: bad shape N=%d C=%d H=%d W=%d (want N >= 0 and C, H, W >= 1)", name, s.N, s.C, s.H, s.W)
	}
	if s.Classes < 1 || s.Classes > math.MaxInt32 {
		return fmt.Errorf("%s: %d classes, want at least 1", name, s.Classes)
	}
	size := int64(s.C) * int64(s.H)
	if size > math.MaxInt32 || size*int64(s.W) > math.MaxInt32 {
		return fmt.Errorf("%s: images of %dx%dx%d are too large", name, s.C, s.H, s.W)
	}
	size *= int64(s.W)
	if int64(s.N) > math.MaxInt32 || size*int64(s.N) != int64(len(s.Images)) {
		return fmt.Errorf("%s: %d image bytes, want N*C*H*W = %d*%d", name, len(s.Images), s.N, size)
	}
	if len(s.Labels) != s.N {
		return fmt.Errorf("%s: %d labels for %d images", name, len(s.Labels), s.N)
	}
	for i, l := range s.Labels {
		if l < 0 || int(l) >= s.Classes {
			return fmt.Errorf("%s: image %d: label %d out of range [0, %d)", name, i, l, s.Classes)
		}
	}
	if s.Coarse != nil {
		if len(s.Coarse) != s.N {
			return fmt.Errorf("%s: %d coarse labels for %d images", name, len(s.Coarse), s.N)
		}
		for i, l := range s.Coarse {
			if l < 0 || l >= coarseClasses {
				return fmt.Errorf("%s: image %d: coarse label %d out of range [0, %d)", name, i, l, coarseClasses)
			}
		}
	}
	if s.ClassNames != nil && len(s.ClassNames) != s.Classes {
		return fmt.Errorf("%s: %d class names for %d classes", name, len(s.ClassNames), s.Classes)
	}
	return nil
}
