package data

import (
	"bytes"
	"fmt"
	"image"
	_ "image/jpeg" // register the JPEG decoder for image.Decode
	_ "image/png"  // register the PNG decoder for image.Decode
	"io"

	"golang.org/x/image/draw"
)

// maxDecodePixels bounds the images DecodeImage accepts, so that a small
// file claiming a huge size cannot exhaust memory.
const maxDecodePixels = 1 << 26

// DecodeImage reads a PNG or JPEG image and returns it as h x w RGB bytes
// in CHW order, the layout of a Set's images, for classifying a user's
// file. An image of another size is center-cropped to the aspect ratio of
// w:h and then resized with Catmull-Rom. Transparent pixels come out as
// their color over black.
func DecodeImage(r io.Reader, h, w int) ([]byte, error) {
	if h < 1 || w < 1 || int64(h)*int64(w) > maxDecodePixels {
		return nil, fmt.Errorf("data: bad target size %dx%d", h, w)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("data: decoding image: %w", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || int64(cfg.Width)*int64(cfg.Height) > maxDecodePixels {
		return nil, fmt.Errorf("data: image of %dx%d pixels, want 1 to %d", cfg.Width, cfg.Height, maxDecodePixels)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("data: decoding image: %w", err)
	}
	rgba := image.NewRGBA(image.Rect(0, 0, w, h))
	src := img.Bounds()
	if src.Dx() == w && src.Dy() == h {
		draw.Draw(rgba, rgba.Bounds(), img, src.Min, draw.Src)
	} else {
		draw.CatmullRom.Scale(rgba, rgba.Bounds(), img, centerCrop(src, w, h), draw.Src, nil)
	}
	out := make([]byte, 3*h*w)
	for i := range h * w {
		out[i] = rgba.Pix[4*i]
		out[h*w+i] = rgba.Pix[4*i+1]
		out[2*h*w+i] = rgba.Pix[4*i+2]
	}
	return out, nil
}

// centerCrop returns the largest rectangle of aspect ratio w:h centred in
// r.
func centerCrop(r image.Rectangle, w, h int) image.Rectangle {
	dx, dy := r.Dx(), r.Dy()
	// Compare dx/dy with w/h in integers.
	if int64(dx)*int64(h) > int64(dy)*int64(w) {
		cw := max(int(int64(dy)*int64(w)/int64(h)), 1)
		x0 := r.Min.X + (dx-cw)/2
		return image.Rect(x0, r.Min.Y, x0+cw, r.Max.Y)
	}
	ch := max(int(int64(dx)*int64(h)/int64(w)), 1)
	y0 := r.Min.Y + (dy-ch)/2
	return image.Rect(r.Min.X, y0, r.Max.X, y0+ch)
}
