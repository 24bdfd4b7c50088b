package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Point is one line of metrics.jsonl: the state of a run after Iter
// iterations. Errors are in percent.
type Point struct {
	Iter       int64    `json:"iter"`
	Epoch      float64  `json:"epoch"`
	TrainLoss  float64  `json:"train_loss"`           // mean over the iterations since the previous point
	TrainError float64  `json:"train_error"`          // of those iterations' batches, before each step's update
	TestError  *float64 `json:"test_error,omitempty"` // when the test set was evaluated at Iter
	LR         float64  `json:"lr"`                   // of the last iteration
	ImagesPerS float64  `json:"images_per_s"`         // training throughput since the previous point
	ElapsedS   float64  `json:"elapsed_s"`            // since the start of the run, resumes included
}

// ReadMetrics reads a metrics.jsonl file.
func ReadMetrics(path string) ([]Point, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ps []Point
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var p Point
		if err := json.Unmarshal(line, &p); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, i+1, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// metricsLog appends points to a metrics.jsonl file and keeps them for the
// plot.
type metricsLog struct {
	path   string
	f      *os.File
	points []Point
}

// openMetrics starts dir/metrics.jsonl with the points of an earlier part
// of the run, those of from/metrics.jsonl up to iteration upTo: a run
// resumed from a checkpoint drops what was logged after it, since it logs
// those iterations again.
func openMetrics(dir, from string, upTo int64) (*metricsLog, error) {
	l := &metricsLog{path: filepath.Join(dir, "metrics.jsonl")}
	if from != "" {
		ps, err := ReadMetrics(filepath.Join(from, "metrics.jsonl"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, p := range ps {
			if p.Iter <= upTo {
				l.points = append(l.points, p)
			}
		}
	}
	var buf bytes.Buffer
	for _, p := range l.points {
		writePoint(&buf, p)
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

// writePoint writes p as one JSON line.
func writePoint(w *bytes.Buffer, p Point) {
	b, err := json.Marshal(p)
	if err != nil {
		panic("BUG: metrics point does not encode: " + err.Error())
	}
	w.Write(b)
	w.WriteByte('\n')
}

// add appends a point.
func (l *metricsLog) add(p Point) error {
	l.points = append(l.points, p)
	var buf bytes.Buffer
	writePoint(&buf, p)
	_, err := l.f.Write(buf.Bytes())
	return err
}

// Close closes the file.
func (l *metricsLog) Close() error {
	return l.f.Close()
}
