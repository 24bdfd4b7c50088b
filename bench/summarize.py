#!/usr/bin/env python3
"""summarize.py turns the raw results of bench/run.sh into one markdown table:
per network and mode (train b128, infer b128, infer b1), the median images/s and
fraction of FMA peak of the generated Go package over its `go test -bench` runs,
PyTorch's images/s with default and with tuned settings (the best tuned
setting per row, named in the last column), and resnetc over the better PyTorch.

It reads `go test -bench` output (BenchmarkTrainStep and BenchmarkInfer of the
gen/ packages; the package name gives the network, images/s x ns/op the batch)
and the JSON written by pytorch_bench.py --json. Standard library only.

  python3 bench/summarize.py --go go-20.txt --pytorch default=pt.json \\
      --pytorch tuned=pt-tuned.json --pytorch tuned=pt-tuned-jit.json
  python3 bench/summarize.py --self-test
"""

import argparse
import json
import re
import statistics
import sys

MODES = [("train", "train b128"), ("infer", "infer b128"), ("infer1", "infer b1")]
NET_ORDER = ["preact-resnet-20", "preact-resnet-164", "preact-resnet-1001"]
BENCH = {"BenchmarkTrainStep": "train", "BenchmarkInfer": "infer"}
LINE = re.compile(r"^(Benchmark[^\s/-]+)(\S*?)(?:-\d+)?\s+(\d+)\s+(.*)$")


def parse_go(text):
    """parse_go reads `go test -bench` output and returns {(net, mode): [run,
    ...]} where a run maps each unit (images/s, frac_peak, GFLOP/s, ...) to its
    value, and the CPU line."""
    runs, pkg, cpu = {}, None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("pkg:"):
            pkg = line.split()[1].rsplit("/", 1)[-1]
        elif line.startswith("cpu:"):
            cpu = line.split(":", 1)[1].strip()
        m = LINE.match(line)
        if not m or m.group(1) not in BENCH or m.group(2) or pkg is None:
            continue
        fields = m.group(4).split()
        values = {fields[i + 1]: float(fields[i]) for i in range(0, len(fields) - 1, 2)}
        if "images/s" not in values or "ns/op" not in values:
            continue
        mode = BENCH[m.group(1)]
        net = re.sub(r"-b\d+$", "", pkg)
        batch = round(values["images/s"] * values["ns/op"] / 1e9)
        if mode == "infer" and batch == 1:
            mode = "infer1"
        runs.setdefault((net, mode), []).append(values)
    return runs, cpu


def setting(doc):
    """setting names a PyTorch run's non-default settings."""
    parts = []
    if doc.get("channels_last"):
        parts.append("channels_last")
    if doc.get("jit", "none") != "none":
        parts.append("jit " + doc["jit"])
    if doc.get("env"):
        parts.append("env")
    return ", ".join(parts) or "default"


def parse_pytorch(docs):
    """parse_pytorch returns {(net, mode): (images/s, setting, note)} keeping,
    for each row, the fastest of the given runs, or a skipped run's reason
    when no run of that row finished."""
    best = {}
    for doc in docs:
        for r in doc.get("results", []):
            key = (r["net"], r["mode"])
            if "skipped" in r:
                best.setdefault(key, (None, setting(doc), "skipped: " + r["skipped"]))
                continue
            note = f"checkpointed, {r['checkpoint_segments']} segments" if r.get("checkpoint_segments") else ""
            cur = best.get(key)
            if cur is None or cur[0] is None or r["images_per_s"] > cur[0]:
                best[key] = (r["images_per_s"], setting(doc), note)
    return best


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def table(go_runs, pt):
    """table renders the markdown table and its footnotes."""
    seen = {k[0] for k in go_runs} | {k[0] for p in pt.values() for k in p}
    nets = [n for n in NET_ORDER if n in seen] + sorted(seen - set(NET_ORDER))
    rows = ["| network | mode | resnetc images/s (median) | resnetc frac. of peak (median) | "
            "PyTorch default images/s | PyTorch tuned images/s | resnetc / best PyTorch | PyTorch tuned setting |",
            "|---|---|--:|--:|--:|--:|--:|---|"]
    notes = []
    for net in nets:
        for mode, label in MODES:
            runs = go_runs.get((net, mode), [])
            d = pt.get("default", {}).get((net, mode))
            t = pt.get("tuned", {}).get((net, mode))
            if not runs and d is None and t is None:
                continue
            ips = statistics.median(r["images/s"] for r in runs) if runs else None
            frac = statistics.median(r["frac_peak"] for r in runs if "frac_peak" in r) if any(
                "frac_peak" in r for r in runs) else None
            cells = []
            for name, v in (("default", d), ("tuned", t)):
                if v is None:
                    cells.append("-")
                    continue
                mark = ""
                if v[2]:
                    notes.append(f"{net} {label}, PyTorch {name}: {v[2]}")
                    mark = f" [{len(notes)}]"
                cells.append(fmt(v[0]) + mark)
            pts = [v[0] for v in (d, t) if v is not None and v[0] is not None]
            ratio = f"{ips / max(pts):.2f}" if ips is not None and pts else "-"
            n = f" (n={len(runs)})" if runs else ""
            rows.append(f"| {net} | {label} | {fmt(ips)}{n} | {fmt(frac, 3)} | {cells[0]} | {cells[1]} | {ratio} | "
                        f"{t[1] if t is not None and t[0] is not None else '-'} |")
    out = "\n".join(rows)
    if notes:
        out += "\n\n" + "\n".join(f"[{i}] {s}" for i, s in enumerate(notes, 1))
    return out


def peak_line(go_runs):
    peaks = [r["peak_GFLOP/s"] for runs in go_runs.values() for r in runs if "peak_GFLOP/s" in r]
    if not peaks:
        return ""
    return (f"FMA peak measured beside the Go benchmarks: median {statistics.median(peaks):.1f} GFLOP/s "
            f"(min {min(peaks):.1f}, max {max(peaks):.1f}, {len(peaks)} runs)")


def self_test():
    """self_test checks the parsing and the medians on a hand-made sample."""
    go = """goos: linux
pkg: github.com/resnetc/resnetc/gen/preact-resnet-20
cpu: Test CPU
BenchmarkTrainStep-2  3  400000000 ns/op  100.0 GFLOP/s  0.40 frac_peak  320.0 images/s  250.0 peak_GFLOP/s
BenchmarkTrainStep-2  3  320000000 ns/op  100.0 GFLOP/s  0.50 frac_peak  400.0 images/s  200.0 peak_GFLOP/s
BenchmarkTrainStep-2  3  256000000 ns/op  100.0 GFLOP/s  0.60 frac_peak  500.0 images/s  100.0 peak_GFLOP/s
BenchmarkInfer-2  3  100000000 ns/op  100.0 GFLOP/s  0.20 frac_peak  1280 images/s  250.0 peak_GFLOP/s
BenchmarkInfer-2  3  50000000 ns/op  100.0 GFLOP/s  0.30 frac_peak  2560 images/s  250.0 peak_GFLOP/s
BenchmarkOther-2  3  50000000 ns/op  9 images/s
pkg: github.com/resnetc/resnetc/gen/preact-resnet-20-b1
BenchmarkInfer-2  3  1000000 ns/op  1000 images/s  0.01 frac_peak
"""
    runs, cpu = parse_go(go)
    assert cpu == "Test CPU", cpu
    assert sorted(runs) == [("preact-resnet-20", "infer"), ("preact-resnet-20", "infer1"),
                            ("preact-resnet-20", "train")], sorted(runs)
    d = {"channels_last": False, "jit": "none", "env": {}, "results": [
        {"net": "preact-resnet-20", "mode": "train", "images_per_s": 600.0},
        {"net": "preact-resnet-20", "mode": "infer", "images_per_s": 1000.0},
        {"net": "preact-resnet-1001", "mode": "train", "skipped": "needs ~40 GiB"}]}
    t1 = {"channels_last": True, "jit": "freeze", "env": {"OMP_NUM_THREADS": "2"}, "results": [
        {"net": "preact-resnet-20", "mode": "train", "images_per_s": 800.0},
        {"net": "preact-resnet-20", "mode": "infer", "images_per_s": 1500.0},
        {"net": "preact-resnet-1001", "mode": "train", "images_per_s": 2.0, "checkpoint_segments": 18}]}
    t2 = {"channels_last": False, "jit": "optimize", "env": {"OMP_NUM_THREADS": "2"}, "results": [
        {"net": "preact-resnet-20", "mode": "infer", "images_per_s": 1700.0}]}
    pt = {"default": parse_pytorch([d]), "tuned": parse_pytorch([t1, t2])}
    out = table(runs, pt)
    want = [
        "| preact-resnet-20 | train b128 | 400.0 (n=3) | 0.500 | 600.0 | 800.0 | 0.50 | channels_last, jit freeze, env |",
        "| preact-resnet-20 | infer b128 | 1,920.0 (n=2) | 0.250 | 1,000.0 | 1,700.0 | 1.13 | jit optimize, env |",
        "| preact-resnet-20 | infer b1 | 1,000.0 (n=1) | 0.010 | - | - | - | - |",
        "| preact-resnet-1001 | train b128 | - | - | - [1] | 2.0 [2] | - | channels_last, jit freeze, env |",
        "[1] preact-resnet-1001 train b128, PyTorch default: skipped: needs ~40 GiB",
        "[2] preact-resnet-1001 train b128, PyTorch tuned: checkpointed, 18 segments",
    ]
    lines = out.splitlines()
    assert len(lines) == 2 + 4 + 1 + 2, f"want a header, 4 rows and 2 notes, got\n{out}"
    for w in want:
        assert w in lines, f"missing line\n{w}\nin\n{out}"
    assert lines.index(want[0]) < lines.index(want[1]) < lines.index(want[2]) < lines.index(want[3]), out
    assert "median 250.0 GFLOP/s (min 100.0, max 250.0, 5 runs)" in peak_line(runs), peak_line(runs)
    print("summarize self-test: ok")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--go", action="append", default=[], metavar="FILE", help="go test -bench output (repeatable)")
    p.add_argument("--pytorch", action="append", default=[], metavar="default|tuned=FILE",
                   help="pytorch_bench.py JSON, labelled default or tuned (repeatable; the best tuned run wins)")
    p.add_argument("--self-test", action="store_true", help="check the parser and the medians, then exit")
    a = p.parse_args(argv)
    if a.self_test:
        self_test()
        return 0
    go_runs, cpu = {}, None
    for path in a.go:
        with open(path) as f:
            r, c = parse_go(f.read())
        for k, v in r.items():
            go_runs.setdefault(k, []).extend(v)
        cpu = cpu or c
    docs = {}
    for spec in a.pytorch:
        label, sep, path = spec.partition("=")
        if not sep or label not in ("default", "tuned"):
            p.error(f"--pytorch {spec!r}: want default=FILE or tuned=FILE")
        with open(path) as f:
            docs.setdefault(label, []).append(json.load(f))
    pt = {label: parse_pytorch(ds) for label, ds in docs.items()}
    head = []
    if cpu:
        head.append(f"CPU: {cpu}")
    for ds in docs.values():
        head.append(f"PyTorch {ds[0].get('torch')}, {ds[0].get('threads')} threads")
        break
    if peak_line(go_runs):
        head.append(peak_line(go_runs))
    if head:
        print("\n".join(head) + "\n")
    print(table(go_runs, pt))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
