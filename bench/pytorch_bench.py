#!/usr/bin/env python3
"""pytorch_bench.py times the pre-activation ResNets that resnetc compiles in gen/
(preact-resnet-20, -164 and -1001, CIFAR-10 shapes) in PyTorch on the CPU, so that
the generated Go packages can be compared with a framework on the same cores.

The networks are built layer for layer as resnetc lowers them (run
`resnetc dump -preset NAME -after lower`): a 3x3 stem conv with no BN after it;
full pre-activation units (BN-ReLU-conv) whose first activation is applied once,
before the split, in the first unit and in every unit that changes shape, so the
shortcut reads the activated signal there; option A shortcuts (stride-2
subsampling, zero channels appended) for the basic-unit net and 1x1 projection
shortcuts for the bottleneck nets; a final BN-ReLU, global average pooling and a
fully-connected layer. Parameters are named as resnetc names them (BN gamma and
beta are PyTorch's weight and bias), and --check compares every name and shape,
the weight and BN parameter counts and the forward multiply-accumulates with the
resnetc command line.

Measured, per network, at a fixed seed on random data:
  train   one training step at batch 128: forward, cross-entropy loss, backward,
          SGD step (momentum 0.9, weight decay 1e-4 on every parameter, as the
          generated TrainStep does);
  infer   inference at batch 128 (eval mode, BN with running statistics, no_grad);
  infer1  inference at batch 1.
Each reports images/s from the median of --steps timed steps after --warmup
untimed ones.

A training step of preact-resnet-1001 at batch 128 stores more activations than
most machines have memory (about 36 GB of forward outputs alone). Before training,
the script measures the bytes autograd saves on a small batch, scales them to the
batch, and when they do not fit in the available memory, checkpoints the
residual units in segments (torch.utils.checkpoint, as PyTorch users do; each
segment's forward runs twice) or, with --checkpoint 0, skips the mode and says
why. The JSON records the segments used.

Examples:
  python3 bench/pytorch_bench.py --nets preact-resnet-20 --steps 5
  python3 bench/pytorch_bench.py --threads 2 --channels-last --jit freeze --json out.json
  python3 bench/pytorch_bench.py --check   # structure against resnetc (needs go)
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

# NETS are the generated networks: unit kind, depth, stage widths (each stage
# after the first starts with a stride-2 unit) and the shortcut where the shape
# changes, from ir/resnet/presets/preact-resnet-*.arch.
NETS = {
    "preact-resnet-20": dict(kind="basic", depth=20, widths=(16, 32, 64), grow="A"),
    "preact-resnet-164": dict(kind="bottleneck", depth=164, widths=(64, 128, 256), grow="projection"),
    "preact-resnet-1001": dict(kind="bottleneck", depth=1001, widths=(64, 128, 256), grow="projection"),
}
STEM_WIDTH = 16
INPUT = (3, 32, 32)
CLASSES = 10
BATCH = 128
MODES = ("train", "infer", "infer1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conv(cin, cout, k, stride=1):
    """conv returns a bias-free convolution initialized as resnetc initializes it:
    normal with std sqrt(2 / (k*k*cout))."""
    c = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    nn.init.normal_(c.weight, 0.0, math.sqrt(2.0 / (k * k * cout)))
    return c


class Projection(nn.Module):
    """Projection is the 1x1 convolution shortcut of a unit that changes shape."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = conv(cin, cout, 1, stride)

    def forward(self, x):
        return self.conv(x)


class OptionA(nn.Module):
    """OptionA is the parameter-free shortcut: x[:, :, ::s, ::s] with zero
    channels appended up to cout (resnetc's subsample_pad)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class Unit(nn.Module):
    """Unit is a full pre-activation residual unit, basic (two 3x3 convs) or
    bottleneck (1x1 to cout/4, 3x3, 1x1 to cout, the stride on the first conv).
    shared says whether its first BN-ReLU comes before the split, so the
    shortcut adds the activated input rather than the input."""

    def __init__(self, kind, cin, cout, stride, grow, shared):
        super().__init__()
        if kind == "basic":
            shapes = [(cin, cout, 3, stride), (cout, cout, 3, 1)]
        else:
            mid = cout // 4
            shapes = [(cin, mid, 1, stride), (mid, mid, 3, 1), (mid, cout, 1, 1)]
        self.depth = len(shapes)
        for i, (ci, co, k, s) in enumerate(shapes, 1):
            self.add_module(f"bn{i}", nn.BatchNorm2d(ci))
            self.add_module(f"conv{i}", conv(ci, co, k, s))
        self.shared = shared
        self.shortcut = None
        if cin != cout or stride != 1:
            self.shortcut = (OptionA if grow == "A" else Projection)(cin, cout, stride)

    def forward(self, x):
        a = F.relu(self.bn1(x), inplace=True)
        h = a if self.shared else x
        if self.shortcut is not None:
            h = self.shortcut(a)
        y = self.conv1(a)
        for i in range(2, self.depth + 1):
            y = getattr(self, f"conv{i}")(F.relu(getattr(self, f"bn{i}")(y), inplace=True))
        return h + y


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = conv(INPUT[0], STEM_WIDTH, 3)

    def forward(self, x):
        return self.conv(x)


class Head(nn.Module):
    """Head is the final BN-ReLU, global average pooling and the classifier
    (weights uniform in +-1/sqrt(width), bias zero, as resnetc initializes them)."""

    def __init__(self, width):
        super().__init__()
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, CLASSES)
        bound = 1.0 / math.sqrt(width)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        x = F.relu(self.bn(x), inplace=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Stage(nn.Module):
    """Stage holds a stage's units, named u1..un, for the parameter names."""


class PreActResNet(nn.Module):
    """PreActResNet is one of NETS. Its modules are named stem, s1..s3 with units
    u1..un, and head, as resnetc names them. segments > 0 checkpoints the units
    in at most that many contiguous segments of equal size during training
    (all but the last, as torch.utils.checkpoint.checkpoint_sequential does)."""

    def __init__(self, name):
        super().__init__()
        spec = NETS[name]
        per_unit = 2 if spec["kind"] == "basic" else 3
        n = (spec["depth"] - 2) // (3 * per_unit)
        if per_unit * 3 * n + 2 != spec["depth"]:
            raise ValueError(f"{name}: depth {spec['depth']} is not {3 * per_unit}n+2")
        self.stem = Stem()
        cin = STEM_WIDTH
        self.units = []
        for s, width in enumerate(spec["widths"], 1):
            stage = Stage()
            for u in range(1, n + 1):
                stride = 2 if s > 1 and u == 1 else 1
                first = s == 1 and u == 1
                unit = Unit(spec["kind"], cin, width, stride, spec["grow"],
                            shared=first or cin != width or stride != 1)
                stage.add_module(f"u{u}", unit)
                self.units.append(unit)
                cin = width
            self.add_module(f"s{s}", stage)
        self.head = Head(cin)
        self.segments = 0

    def forward(self, x):
        x = self.stem(x)
        units = self.units
        if self.segments > 0 and self.training and torch.is_grad_enabled():
            size, starts = segment(len(units), self.segments)
            for s in starts:
                x = torch.utils.checkpoint.checkpoint(run_units(units[s:s + size]), x, preserve_rng_state=False)
            units = units[starts[-1] + size:] if starts else units
        for u in units:
            x = u(x)
        return self.head(x)


def segment(n, segments):
    """segment splits n units into segments: it returns the segment size and the
    starts of the segments that are checkpointed, every one but the last."""
    size = math.ceil(n / segments)
    return size, list(range(0, n - size, size))


def run_units(units):
    def run(x):
        for u in units:
            x = u(x)
        return x
    return run


def counts(model):
    """counts returns the weight parameters (conv and fully-connected, the
    paper's way, as resnetc describe counts them) and the BN parameters."""
    weights = bn = 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            bn += m.weight.numel() + m.bias.numel()
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            weights += sum(p.numel() for p in m.parameters(recurse=False))
    return weights, bn


def ir_names(model):
    """ir_names maps the model's parameters and BN statistics to resnetc's
    names (gamma, beta, mean, var for BN) and shapes."""
    out = {}
    rename = {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"}
    bns = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        prefix, _, leaf = n.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if prefix in bns:
            leaf = rename[leaf]
        out[f"{prefix}.{leaf}"] = tuple(t.shape)
    return out


def forward_macs(model):
    """forward_macs counts the multiply-accumulates of one image's forward pass
    through every convolution and the classifier."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *INPUT))
    for h in hs:
        h.remove()
    return total


def data(batch, seed, channels_last):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *INPUT, generator=g)
    y = torch.randint(0, CLASSES, (batch,), generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def saved_per_unit(model, batch, seed, channels_last):
    """saved_per_unit runs a training forward pass at a small batch and returns
    the bytes autograd saves for the backward pass outside the units, in each
    unit, and each unit's input, excluding the parameters."""
    params = {p.storage().data_ptr() for p in model.parameters()}
    seen = {}
    where = [-1]
    inputs = []
    hooks = []
    for i, u in enumerate(model.units):
        def pre(m, inp, i=i):
            where[0] = i
            inputs.append(inp[0].numel() * inp[0].element_size())

        def post(m, inp, out):
            where[0] = -1
        hooks += [u.register_forward_pre_hook(pre), u.register_forward_hook(post)]

    def pack(t):
        s = t.storage()
        k = s.data_ptr()
        if k not in params and k not in seen:
            seen[k] = (where[0], s.nbytes())
        return t
    x, y = data(batch, seed, channels_last)
    model.train()
    segments, model.segments = model.segments, 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    model.segments = segments
    del loss
    for h in hooks:
        h.remove()
    outside, units = 0, [0] * len(model.units)
    for w, n in seen.values():
        if w < 0:
            outside += n
        else:
            units[w] += n
    return outside, units, inputs


def train_memory(model, segments, batch, seed, channels_last, probe=4):
    """train_memory estimates the peak bytes of a training step at batch with
    the units checkpointed in segments (0: none): parameters, gradients and
    momentum, plus what autograd keeps, scaled from a probe batch, plus a
    margin for the transients of the backward pass."""
    outside, units, inputs = saved_per_unit(model, probe, seed, channels_last)
    scale = batch / probe
    state = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    if segments <= 0:
        kept = outside + sum(units)
    else:
        size, starts = segment(len(units), segments)
        last = starts[-1] + size if starts else 0
        boundaries = sum(inputs[s] for s in starts)
        recomputed = max(sum(units[s:s + size]) for s in starts) if starts else 0
        kept = outside + boundaries + sum(units[last:]) + recomputed
    return int(kept * scale * 1.15) + state + (256 << 20)


def plan_checkpoint(model, requested, batch, seed, channels_last):
    """plan_checkpoint returns the checkpoint segments for training (0: none)
    and the estimated peak bytes, or None and a reason when the step does not
    fit in the available memory."""
    avail = mem_available()
    limit = None if avail is None else int(avail * 0.85)
    if requested != "auto":
        k = int(requested)
        need = train_memory(model, k, batch, seed, channels_last)
        if limit is not None and need > limit and k == 0:
            return None, need, (f"needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available "
                                "(try --checkpoint auto)")
        return k, need, None
    need = train_memory(model, 0, batch, seed, channels_last)
    if limit is None or need <= limit:
        return 0, need, None
    k = max(2, round(math.sqrt(len(model.units))))
    need_k = train_memory(model, k, batch, seed, channels_last)
    if need_k <= limit:
        return k, need_k, None
    return None, need_k, f"needs ~{need_k / 2**30:.1f} GiB even checkpointed, {avail / 2**30:.1f} GiB available"


def timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def jit_model(model, x, how):
    """jit_model traces the eval-mode model for x's shape and freezes it (BN after
    a conv folds into it), optionally with optimize_for_inference, and checks
    that it computes what the eager model does. It returns the module and the
    relative difference of their logits. Logits that overflow (a very deep net
    at initialization, with the running statistics of inference) must overflow
    in both; the finite ones are compared."""
    with torch.no_grad():
        m = torch.jit.freeze(torch.jit.trace(model, x))
        if how == "optimize":
            m = torch.jit.optimize_for_inference(m)
        want, got = model(x), m(x)
    finite = torch.isfinite(want)
    if not torch.equal(finite, torch.isfinite(got)):
        raise RuntimeError(f"jit {how}: logits overflow in one of eager and jit modes only")
    err = 0.0
    if finite.any():
        err = float((got - want)[finite].abs().max() / max(float(want[finite].abs().max()), 1e-30))
    if not err <= 1e-3:
        raise RuntimeError(f"jit {how}: logits differ from eager mode by {err:.3g} (relative)")
    return m, err


def bench_net(name, args, log):
    torch.manual_seed(args.seed)
    model = PreActResNet(name)
    weights, bn = counts(model)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    results = []
    base = dict(net=name, weights=weights, bn_params=bn)
    for mode in args.modes:
        batch = 1 if mode == "infer1" else args.batch
        steps = args.steps_b1 if mode == "infer1" else args.steps
        warmup = args.warmup_b1 if mode == "infer1" else args.warmup
        r = dict(base, mode=mode, batch=batch, warmup=warmup, steps=steps)
        x, y = data(batch, args.seed, args.channels_last)
        if mode == "train":
            segments, need, reason = plan_checkpoint(model, args.checkpoint, batch, args.seed, args.channels_last)
            r["estimated_peak_bytes"] = need
            if segments is None:
                r["skipped"] = reason
                log(f"{name} {mode}: skipped: {reason}")
                results.append(r)
                continue
            # The segments actually made: ceil-sized, so at most the number asked.
            r["checkpoint_segments"] = len(segment(len(model.units), segments)[1]) + 1 if segments else 0
            model.segments = segments
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
            times = timed(step, warmup, steps)
            model.segments = 0
            del opt
        else:
            model.eval()
            run = model
            if args.jit != "none":
                run, r["jit_rel_err"] = jit_model(model, x, args.jit)

            def step():
                with torch.no_grad():
                    run(x)
            times = timed(step, warmup, steps)
        med = statistics.median(times)
        r.update(seconds=times, median_seconds=med, images_per_s=batch / med)
        extra = f" (checkpointed in {r['checkpoint_segments']} segments)" if r.get("checkpoint_segments") else ""
        log(f"{name} {mode} b{batch}: {batch / med:10.1f} images/s  median {med * 1e3:.1f} ms of {steps}{extra}")
        results.append(r)
    return results


def resnetc(args_list):
    """resnetc runs the compiler's command line from the repository."""
    cmd = os.environ.get("RESNETC")
    argv = cmd.split() if cmd else ["go", "run", "./cmd/resnetc"]
    p = subprocess.run(argv + args_list, cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv + args_list)}: {p.stderr.strip()}")
    return p.stdout


def ir_params(text):
    """ir_params reads the param and state declarations of an IR dump:
    name -> shape."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] not in ("param", "state"):
            continue
        name = parts[3].strip('"')
        shape = line.rsplit("f32[", 1)[1].rstrip("]").strip()
        out[name] = tuple(int(d) for d in shape.split(",")) if shape else ()
    return out


def check(nets):
    """check compares each net's structure with resnetc: every parameter and BN
    statistic by name and shape against the lowered IR, the weight and BN
    parameter counts and the forward MACs against describe, per stage and in
    total. It returns the number of mismatches."""
    bad = 0
    tmp = None
    if not os.environ.get("RESNETC") and shutil.which("go"):
        tmp = tempfile.mkdtemp()
        exe = os.path.join(tmp, "resnetc")
        subprocess.run(["go", "build", "-o", exe, "./cmd/resnetc"], cwd=REPO, check=True)
        os.environ["RESNETC"] = exe
    print(f"{'network':20} {'weights':>10} {'resnetc':>10} {'bn_params':>10} {'resnetc':>10} "
          f"{'fwd MACs':>14} {'resnetc':>14}  names+shapes")
    for name in nets:
        model = PreActResNet(name)
        weights, bn = counts(model)
        macs = forward_macs(model)
        d = json.loads(resnetc(["describe", "-preset", name, "-json"]))
        want = ir_params(resnetc(["dump", "-preset", name, "-after", "lower"]))
        got = ir_names(model)
        diff = [f"  {n}: resnetc {want.get(n)} pytorch {got.get(n)}"
                for n in sorted(set(want) | set(got)) if want.get(n) != got.get(n)]
        for st in d["stages"]:
            mine = {n: math.prod(s) for n, s in got.items() if n.startswith(st["name"] + ".")}
            sw = sum(v for n, v in mine.items() if not n.endswith((".gamma", ".beta", ".mean", ".var")))
            sb = sum(v for n, v in mine.items() if n.endswith((".gamma", ".beta")))
            if (sw, sb) != (st["weights"], st["bn_params"]):
                diff.append(f"  stage {st['name']}: weights {sw} bn {sb}, resnetc {st['weights']} {st['bn_params']}")
        ok = (weights, bn, macs) == (d["weights"], d["bn_params"], d["macs"]) and not diff
        print(f"{name:20} {weights:10d} {d['weights']:10d} {bn:10d} {d['bn_params']:10d} {macs:14d} {d['macs']:14d}  "
              f"{len(got)} {'match' if not diff else 'MISMATCH'}  {'ok' if ok else 'FAIL'}")
        for line in diff[:20]:
            print(line)
        bad += not ok
    if tmp:
        shutil.rmtree(tmp)
    return bad


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return cpu


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--nets", default=",".join(NETS), help="comma-separated networks (default all)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated of train, infer, infer1 (default all)")
    p.add_argument("--steps", type=int, default=10, help="timed steps at batch 128 (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first at batch 128 (default 3)")
    p.add_argument("--steps-b1", type=int, default=50, help="timed batch-1 inferences (default 50)")
    p.add_argument("--warmup-b1", type=int, default=10, help="untimed batch-1 inferences (default 10)")
    p.add_argument("--batch", type=int, default=BATCH, help="batch of train and infer (default 128)")
    p.add_argument("--channels-last", action="store_true", help="torch.channels_last for the model and input")
    p.add_argument("--jit", choices=("none", "freeze", "optimize"), default="none",
                   help="inference through torch.jit.trace+freeze, or with optimize_for_inference too")
    p.add_argument("--checkpoint", default="auto",
                   help="checkpoint segments for training: auto (only when it does not fit), 0 (never), N")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE (- for stdout)")
    p.add_argument("--check", action="store_true",
                   help="compare the networks' structure with resnetc (go on PATH or RESNETC=binary) and exit")
    a = p.parse_args(argv)
    a.nets = [n.strip() for n in a.nets.split(",") if n.strip()]
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for n in a.nets:
        if n not in NETS:
            p.error(f"unknown network {n!r}; want one of {', '.join(NETS)}")
    for m in a.modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}; want one of {', '.join(MODES)}")
    if a.checkpoint != "auto" and not a.checkpoint.isdigit():
        p.error(f"--checkpoint {a.checkpoint!r}: want auto or a number of segments")
    if min(a.steps, a.steps_b1) < 1 or min(a.warmup, a.warmup_b1) < 0 or a.threads < 1 or a.batch < 1:
        p.error("steps, threads and batch must be positive, warm-up not negative")
    return a


def main(argv):
    args = parse_args(argv)
    if args.check:
        return 1 if check(args.nets) else 0
    torch.set_num_threads(args.threads)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json == "-" else (lambda s: print(s, flush=True))
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, channels_last={args.channels_last}, "
        f"jit={args.jit}, {machine()}")
    results = []
    for name in args.nets:
        results += bench_net(name, args, log)
    out = dict(
        tool="pytorch", torch=torch.__version__, threads=torch.get_num_threads(), cpu=machine(),
        channels_last=args.channels_last, jit=args.jit, seed=args.seed,
        env={k: os.environ[k] for k in sorted(os.environ)
             if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "MALLOC_", "KMP_", "LD_PRELOAD"))},
        results=results,
    )
    if args.json == "-":
        json.dump(out, sys.stdout, indent=1)
        print()
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
