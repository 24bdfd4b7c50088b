package data

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
)

// downloadBase is where the official archives are, and httpClient what
// fetches them; tests point them at a local server.
var (
	downloadBase = "https://www.cs.toronto.edu/~kriz/"
	httpClient   = http.DefaultClient
)

// archives are the downloadable releases: file name and MD5 as published
// on the CIFAR page.
var archives = map[string]struct{ file, md5 string }{
	"cifar-10":  {"cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"},
	"cifar-100": {"cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"},
}

// Download fetches the official binary archive of name ("cifar-10" or
// "cifar-100") into cacheDir (default os.UserCacheDir()/resnetc) unless a
// copy with the published MD5 is already there, and returns its path, which
// Load reads directly. It shows a progress bar on progress (nil = quiet).
// The archive is written to a temporary file in cacheDir, verified and then
// renamed, so an interrupted or corrupt download leaves no file under the
// final name.
func Download(name, cacheDir string, progress io.Writer) (path string, err error) {
	a, ok := archives[name]
	if !ok {
		return "", fmt.Errorf("data: no download named %q (want cifar-10 or cifar-100)", name)
	}
	if cacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("data: no cache directory (%v); give one", err)
		}
		cacheDir = filepath.Join(dir, "resnetc")
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	path = filepath.Join(cacheDir, a.file)
	if sum, err := fileMD5(path); err == nil && sum == a.md5 {
		return path, nil
	}
	url := downloadBase + a.file
	tmp, err := os.CreateTemp(cacheDir, a.file+".*.part")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", fmt.Errorf("data: downloading %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("data: downloading %s: %s", url, resp.Status)
	}
	h := md5.New()
	w := io.MultiWriter(tmp, h)
	if progress != nil {
		bar := progressbar.NewOptions64(resp.ContentLength,
			progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription(a.file),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }),
		)
		w = io.MultiWriter(w, bar)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return "", fmt.Errorf("data: downloading %s: %w after %d bytes", url, err, n)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("data: downloading %s: %d bytes of %d", url, n, resp.ContentLength)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != a.md5 {
		return "", fmt.Errorf("data: downloading %s: md5 %s, want %s (corrupt or changed download)", url, sum, a.md5)
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// fileMD5 returns the hex MD5 of the file at path.
func fileMD5(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
