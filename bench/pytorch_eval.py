#!/usr/bin/env python3
"""pytorch_eval.py loads a checkpoint written by a generated trainer into the PyTorch
twin of its network (pytorch_bench.py) and measures its CIFAR-10 test error there:
an independent check of the trainer's evaluation (folded BatchNorm, the generated
inference kernels) and of the checkpoint format. It reads the safetensors file with
nothing but the standard library and NumPy.

  python3 bench/pytorch_eval.py runs/preact-resnet-20-.../checkpoint.safetensors \\
      --data ../shared/data/cifar-10-binary.tar.gz [--train-error]

The checkpoint's header gives the network and the normalization the trainer used.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_bench import NETS, PreActResNet, ir_names  # noqa: E402
from pytorch_train import load_cifar10  # noqa: E402

TORCH_LEAF = {"gamma": "weight", "beta": "bias", "mean": "running_mean", "var": "running_var"}


def read_safetensors(path):
    """read_safetensors returns the tensors (name: float32 array, flat) and the
    metadata of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SystemExit(f"{path}: {len(raw)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise SystemExit(f"{path}: header of {n} bytes runs past the end of the file")
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as e:
        raise SystemExit(f"{path}: header is not JSON: {e}")
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        if not isinstance(h, dict) or h.get("dtype") != "F32" or len(h.get("data_offsets", ())) != 2:
            raise SystemExit(f"{path}: tensor {name!r}: header {str(h)[:100]!r}, want dtype F32 and two data_offsets")
        a, b = h["data_offsets"]
        if not 0 <= a <= b <= len(data):
            raise SystemExit(f"{path}: tensor {name!r}: data_offsets {a}, {b} outside the {len(data)} data bytes")
        tensors[name] = np.frombuffer(data[a:b], dtype=np.float32)
    return tensors, meta


def error(model, x, y, batch=500):
    wrong = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            wrong += (model(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum().item()
    return 100.0 * wrong / len(x)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="CIFAR-10 binary: the .tar.gz or its folder")
    p.add_argument("--train-error", action="store_true", help="also measure the error on the (unaugmented) training set")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    tensors, meta = read_safetensors(args.checkpoint)
    net = meta.get("network")
    if net not in NETS:
        raise SystemExit(f"{args.checkpoint}: network {net!r}; this script knows {', '.join(sorted(NETS))}")
    model = PreActResNet(net)
    state = {}
    for name, shape in ir_names(model).items():
        if name not in tensors:
            raise SystemExit(f"{args.checkpoint}: no tensor {name!r}")
        t = tensors[name]
        if t.size != int(np.prod(shape)):
            raise SystemExit(f"{args.checkpoint}: tensor {name!r} has {t.size} values, want shape {shape}")
        prefix, _, leaf = name.rpartition(".")
        state[f"{prefix}.{TORCH_LEAF.get(leaf, leaf)}"] = torch.from_numpy(t.copy()).reshape(shape)
    model.load_state_dict(state, strict=False)
    model.eval()

    mean = torch.tensor([float(v) for v in meta["mean"].split(",")]).view(1, 3, 1, 1)
    std = torch.tensor([float(v) for v in meta["std"].split(",")]).view(1, 3, 1, 1)
    xtr, ytr, xte, yte = load_cifar10(args.data)
    xte = (torch.from_numpy(xte).float() - mean) / std
    print(f"{net} at step {meta.get('step')}: test error {error(model, xte, torch.from_numpy(yte)):.2f}%"
          f" (the trainer recorded {json.loads(meta.get('progress', '{}')).get('test_error')})")
    if args.train_error:
        xtr = (torch.from_numpy(xtr).float() - mean) / std
        print(f"training-set error, unaugmented: {error(model, xtr, torch.from_numpy(ytr)):.2f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
