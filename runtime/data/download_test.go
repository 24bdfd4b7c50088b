package data

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeArchives serves content as both archives over HTTPS, with the
// published checksums replaced by content's, and counts the requests. mode
// changes what the server sends.
type fakeArchives struct {
	content []byte
	mode    string // "", "corrupt", "interrupt", "missing", "nolength"
	hits    atomic.Int32
}

func serveArchives(t *testing.T, content []byte) *fakeArchives {
	t.Helper()
	f := &fakeArchives{content: content}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		if r.URL.Path != "/cifar-10-binary.tar.gz" && r.URL.Path != "/cifar-100-binary.tar.gz" || f.mode == "missing" {
			http.NotFound(w, r)
			return
		}
		body := f.content
		switch f.mode {
		case "corrupt":
			body = bytes.Clone(body)
			body[len(body)/3] ^= 1
		case "interrupt":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		case "nolength":
			w.Write(body[:len(body)/2]) // chunked, then a clean end: a short file
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	sum := md5.Sum(content)
	oldBase, oldClient, oldArchives := downloadBase, httpClient, archives
	downloadBase, httpClient = srv.URL+"/", srv.Client()
	archives = map[string]struct{ file, md5 string }{
		"cifar-10":  {"cifar-10-binary.tar.gz", hex.EncodeToString(sum[:])},
		"cifar-100": {"cifar-100-binary.tar.gz", hex.EncodeToString(sum[:])},
	}
	t.Cleanup(func() { downloadBase, httpClient, archives = oldBase, oldClient, oldArchives })
	return f
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestDownload(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	f := serveArchives(t, content)
	dir := filepath.Join(t.TempDir(), "cache")

	var progress bytes.Buffer
	p, err := Download("cifar-10", dir, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, "cifar-10-binary.tar.gz") {
		t.Errorf("path %s", p)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, content) {
		t.Error("downloaded file differs from the served one")
	}
	if out := progress.String(); !strings.Contains(out, "cifar-10-binary.tar.gz") || !strings.Contains(out, "100%") || !strings.Contains(out, "262/262 kB") {
		t.Errorf("progress output %q lacks the name, 100%% or the size", out)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("cache holds %v, want only the archive", names)
	}

	// A verified file is reused without a request, quietly.
	hits := f.hits.Load()
	if p2, err := Download("cifar-10", dir, nil); err != nil || p2 != p || f.hits.Load() != hits {
		t.Errorf("second download: %s, %v, %d requests; want the cached file without a request", p2, err, f.hits.Load()-hits)
	}

	// A cached file that fails the check is fetched again.
	os.WriteFile(p, []byte("damaged"), 0o644)
	if _, err := Download("cifar-10", dir, nil); err != nil || f.hits.Load() != hits+1 {
		t.Errorf("after damage: %v, %d requests", err, f.hits.Load()-hits)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, content) {
		t.Error("damaged file not replaced")
	}

	// Failures leave no file behind, and the name is in the error.
	for _, c := range []struct{ mode, name, want string }{
		{"corrupt", "cifar-10", "md5"},
		{"interrupt", "cifar-100", "cifar-100-binary.tar.gz: unexpected EOF after"},
		{"nolength", "cifar-10", "md5"},
		{"missing", "cifar-100", "404"},
	} {
		f.mode = c.mode
		fresh := t.TempDir()
		var progress bytes.Buffer
		_, err := Download(c.name, fresh, &progress)
		if err == nil {
			t.Errorf("%s: no error", c.mode)
			continue
		}
		wantErr(t, err, c.want)
		if names := dirNames(t, fresh); len(names) != 0 {
			t.Errorf("%s: left %v in the cache", c.mode, names)
		}
	}
	// A failed download does not touch a good cached file... and a bad one
	// is not replaced by a corrupt download.
	f.mode = "corrupt"
	os.WriteFile(p, []byte("damaged"), 0o644)
	if _, err := Download("cifar-10", dir, nil); err == nil {
		t.Error("corrupt download over a damaged cache: no error")
	}
	if b, _ := os.ReadFile(p); string(b) != "damaged" {
		t.Error("a corrupt download replaced the cached file")
	}

	_, err = Download("mnist", dir, nil)
	wantErr(t, err, `no download named "mnist"`)
}
