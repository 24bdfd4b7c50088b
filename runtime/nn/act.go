package nn

// Act describes the storage of an activation of logical shape
// [N, C, H, W]: plain NCHW, or blocked NCHW8c ([N][C/8][H][W][8], C a
// multiple of 8) when Blocked. A rank-2 tensor [N, C] is an Act with
// H = W = 1, never blocked.
type Act struct {
	N, C, H, W int
	Blocked    bool
}

// Len is the number of elements.
func (a Act) Len() int { return a.N * a.C * a.H * a.W }

// Image is the number of elements of one image.
func (a Act) Image() int { return a.C * a.H * a.W }

// At is the storage index of logical element (n, c, h, w).
func (a Act) At(n, c, h, w int) int {
	if a.Blocked {
		return (((n*(a.C/8)+c/8)*a.H+h)*a.W+w)*8 + c%8
	}
	return ((n*a.C+c)*a.H+h)*a.W + w
}

// Channel is the channel of the element at storage index i.
func (a Act) Channel(i int) int {
	if a.Blocked {
		return (i/(a.H*a.W*8))%(a.C/8)*8 + i%8
	}
	return (i / (a.H * a.W)) % a.C
}
