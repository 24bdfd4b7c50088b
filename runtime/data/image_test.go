package data

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"testing"
)

// chw returns the RGB bytes of img in CHW order, read pixel by pixel
// through the color model: the reference for DecodeImage without resizing.
func chw(img image.Image) []byte {
	b := img.Bounds()
	h, w := b.Dy(), b.Dx()
	out := make([]byte, 3*h*w)
	for y := range h {
		for x := range w {
			c := color.RGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.RGBA)
			out[y*w+x], out[h*w+y*w+x], out[2*h*w+y*w+x] = c.R, c.G, c.B
		}
	}
	return out
}

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func randomRGBA(seed uint64, w, h int) *image.NRGBA {
	r := randFor(seed)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(r.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	return img
}

// TestDecodeImageExactSize checks PNGs of several color models and a JPEG
// at the target size against a pixel-by-pixel conversion.
func TestDecodeImageExactSize(t *testing.T) {
	rgb := randomRGBA(1, 7, 5)
	gray := image.NewGray(image.Rect(0, 0, 7, 5))
	for i := range gray.Pix {
		gray.Pix[i] = byte(i * 7)
	}
	pal := image.NewPaletted(image.Rect(0, 0, 7, 5), color.Palette{color.RGBA{1, 2, 3, 255}, color.RGBA{200, 100, 50, 255}})
	for i := range pal.Pix {
		pal.Pix[i] = byte(i % 2)
	}
	alpha := randomRGBA(2, 7, 5)
	for i := 3; i < len(alpha.Pix); i += 4 {
		alpha.Pix[i] = byte(i * 3)
	}
	for name, img := range map[string]image.Image{"rgb": rgb, "gray": gray, "paletted": pal, "alpha": alpha} {
		got, err := DecodeImage(bytes.NewReader(encodePNG(t, img)), 5, 7)
		if err != nil {
			t.Fatal(err)
		}
		if want := chw(img); !bytes.Equal(got, want) {
			t.Errorf("%s PNG: got %v\nwant %v", name, got[:12], want[:12])
		}
	}
	// Alpha: the color over black.
	px := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	px.Pix = []byte{200, 100, 50, 128}
	got, err := DecodeImage(bytes.NewReader(encodePNG(t, px)), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{100, 50, 25}; !bytes.Equal(got, want) {
		t.Errorf("half-transparent pixel: %v, want %v", got, want)
	}

	var jb bytes.Buffer
	smooth := image.NewRGBA(image.Rect(0, 0, 16, 8))
	for y := range 8 {
		for x := range 16 {
			smooth.Set(x, y, color.RGBA{byte(16 * x), byte(30 * y), 128, 255})
		}
	}
	if err := jpeg.Encode(&jb, smooth, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	got, err = DecodeImage(bytes.NewReader(jb.Bytes()), 8, 16)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := jpeg.Decode(bytes.NewReader(jb.Bytes()))
	if want := chw(dec); !bytes.Equal(got, want) {
		t.Error("JPEG: differs from the decoded image")
	}
	orig := chw(smooth)
	for i := range got {
		if math.Abs(float64(got[i])-float64(orig[i])) > 24 {
			t.Fatalf("JPEG byte %d: %d, original %d", i, got[i], orig[i])
		}
	}
}

// TestDecodeImageResize checks the center crop to the target's aspect
// ratio (the margins must not show) and the resize.
func TestDecodeImageResize(t *testing.T) {
	green := color.RGBA{10, 200, 30, 255}
	// bands returns a w x h image of green with margins of red and blue
	// outside the centred region of aspect ratio tw:th, and a ramp from 0
	// to 255 across that region in the blue channel.
	bands := func(w, h, tw, th int) image.Image {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		keep := centerCropRef(w, h, tw, th)
		for y := range h {
			for x := range w {
				c := green
				c.B = byte(255 * (x - keep.Min.X) / max(keep.Dx()-1, 1))
				if !(image.Point{x, y}).In(keep) {
					c = color.RGBA{255, 0, 0, 255}
					if x >= w/2 || y >= h/2 {
						c = color.RGBA{0, 0, 255, 255}
					}
				}
				img.Set(x, y, c)
			}
		}
		return img
	}
	for _, c := range []struct{ w, h, tw, th int }{
		{64, 48, 32, 32}, {48, 64, 32, 32}, {64, 64, 32, 16}, {20, 30, 32, 32}, {100, 37, 24, 24}, {33, 33, 32, 32},
	} {
		got, err := DecodeImage(bytes.NewReader(encodePNG(t, bands(c.w, c.h, c.tw, c.th))), c.th, c.tw)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3*c.tw*c.th {
			t.Fatalf("%dx%d -> %dx%d: %d bytes", c.w, c.h, c.tw, c.th, len(got))
		}
		n := c.tw * c.th
		for i := range n {
			if d := max(absDiff(got[i], green.R), absDiff(got[n+i], green.G)); d > 2 {
				t.Fatalf("%dx%d -> %dx%d: pixel %d is %v, want green: the crop is too large", c.w, c.h, c.tw, c.th, i, []byte{got[i], got[n+i], got[2*n+i]})
			}
		}
		// The ramp spans the output: the crop is not too small either.
		cw := centerCropRef(c.w, c.h, c.tw, c.th).Dx()
		edge := 255 * float64(cw) / float64(c.tw) / float64(cw-1) // one output pixel of ramp
		for y := range c.th {
			first, last := float64(got[2*n+y*c.tw]), float64(got[2*n+y*c.tw+c.tw-1])
			if first > edge+2 || last < 255-edge-2 {
				t.Fatalf("%dx%d -> %dx%d: row %d ramps from %v to %v, want about 0 to 255 (within %.0f)", c.w, c.h, c.tw, c.th, y, first, last, edge)
			}
		}
	}
	// A left-dark, right-bright image stays so after halving.
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := 32; x < 64; x++ {
			img.Pix[y*64+x] = 255
		}
	}
	got, err := DecodeImage(bytes.NewReader(encodePNG(t, img)), 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	for y := range 32 {
		if got[y*32+2] > 5 || got[y*32+29] < 250 || got[y*32+15] > got[y*32+16] {
			t.Fatalf("row %d after resize: %v", y, got[y*32:y*32+32])
		}
	}
}

// centerCropRef is the crop DecodeImage must take: the largest centred
// rectangle within w x h of aspect ratio tw:th (to the pixel).
func centerCropRef(w, h, tw, th int) image.Rectangle {
	cw, ch := min(w, h*tw/th), min(h, w*th/tw)
	return image.Rect((w-cw)/2, (h-ch)/2, (w-cw)/2+cw, (h-ch)/2+ch)
}

func absDiff(a, b byte) int { return int(math.Abs(float64(a) - float64(b))) }

// TestDecodeImageErrors checks that bad input is an error, not a panic.
func TestDecodeImageErrors(t *testing.T) {
	good := encodePNG(t, randomRGBA(3, 4, 4))
	// A PNG header claiming 100000 x 100000 pixels.
	huge := bytes.Clone(good)
	binary.BigEndian.PutUint32(huge[16:], 100000)
	binary.BigEndian.PutUint32(huge[20:], 100000)
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29]))
	for _, c := range []struct {
		name string
		b    []byte
		h, w int
		want string
	}{
		{"garbage", []byte("not an image"), 32, 32, "decoding image"},
		{"empty", nil, 32, 32, "decoding image"},
		{"truncated", good[:len(good)/2], 32, 32, "decoding image"},
		{"huge", huge, 32, 32, "image of 100000x100000 pixels"},
		{"zero target", good, 0, 32, "bad target size 0x32"},
	} {
		_, err := DecodeImage(bytes.NewReader(c.b), c.h, c.w)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		wantErr(t, err, c.want)
	}
}
