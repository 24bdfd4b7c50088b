#!/usr/bin/env python3
"""pytorch_train.py trains a network of pytorch_bench.py on CIFAR-10 in PyTorch with
the recipe the generated trainers use by default, so that their test error can be
compared with a framework's on the same data, schedule and budget.

The recipe is the one of `trainer train`: batch 128; per-channel normalization with
the training set's mean and standard deviation; 4-pixel zero padding (after
normalization), a random 32x32 crop and a random horizontal flip; SGD with momentum
0.9 and weight decay 1e-4 on every parameter; learning rate 0.1 with a half-cosine
decay to 0 over the run (or the paper's steps with --schedule step); the network
initialized as resnetc initializes it. The test error is measured in eval mode
(running BatchNorm statistics) after every --eval-every iterations and at the end.

Run it as bench/run.sh runs PyTorch tuned (glibc's malloc otherwise returns the
activations to the kernel after every step, and the step spends most of its time
in page faults):
  export OPENBLAS_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296

Examples:
  python3 bench/pytorch_train.py --data ../shared/data/cifar-10-binary.tar.gz --epochs 5
  python3 bench/pytorch_train.py --data DIR --epochs 20 --threads 2 --json out.jsonl
"""

import argparse
import json
import math
import os
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_bench import NETS, PreActResNet  # noqa: E402

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"


def read_records(raw, name):
    if len(raw) % RECORD != 0:
        raise SystemExit(f"{name}: {len(raw)} bytes, not a whole number of {RECORD}-byte records")
    a = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD).copy()
    labels = a[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise SystemExit(f"{name}: label {labels.max()} out of range 0..9")
    return a[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(path):
    """load_cifar10 reads the official binary CIFAR-10, from the .tar.gz or a folder."""
    files = {}
    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            for n in names:
                if n in TRAIN_FILES or n == TEST_FILE:
                    with open(os.path.join(root, n), "rb") as f:
                        files[n] = f.read()
    else:
        with tarfile.open(path, "r:gz") as tf:
            for m in tf.getmembers():
                n = os.path.basename(m.name)
                if m.isfile() and (n in TRAIN_FILES or n == TEST_FILE):
                    files[n] = tf.extractfile(m).read()
    missing = [n for n in TRAIN_FILES + [TEST_FILE] if n not in files]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    parts = [read_records(files[n], n) for n in TRAIN_FILES]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = read_records(files[TEST_FILE], TEST_FILE)
    return xtr, ytr, xte, yte


def normalize(x, mean, std):
    return (torch.from_numpy(x).float() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def augment(x, gen, pad=4):
    """augment pads a normalized batch by pad zeros, crops 32x32 at random and
    flips half of the images horizontally."""
    n, _, h, w = x.shape
    p = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        c = p[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = c.flip(2) if flip[i] else c
    return out


def lr_at(k, total, base, schedule, milestones):
    if schedule == "cosine":
        return base * (1 + math.cos(math.pi * k / total)) / 2
    lr = base
    for m in milestones:
        if k >= m:
            lr /= 10
    return lr


def test_error(model, xte, yte, batch=500):
    model.eval()
    wrong = 0
    with torch.no_grad():
        for i in range(0, len(xte), batch):
            out = model(xte[i:i + batch])
            wrong += (out.argmax(1) != yte[i:i + batch]).sum().item()
    model.train()
    return 100.0 * wrong / len(xte)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="CIFAR-10 binary: the .tar.gz or its folder")
    p.add_argument("--net", default="preact-resnet-20", choices=sorted(NETS))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=float, help="run length in epochs of 50,000 images")
    g.add_argument("--iters", type=int, help="run length in iterations")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--milestones", default="32000,48000", help="step schedule: iterations that divide the rate by 10")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=0, help="iterations between test evaluations (0: at the end only)")
    p.add_argument("--json", help="append one JSON line per evaluation to this file")
    a = p.parse_args(argv)
    if a.epochs is None and a.iters is None:
        a.epochs = 20
    return a


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr, xte, yte = load_cifar10(args.data)
    mean = torch.tensor(xtr.reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1).mean(1, dtype=np.float64), dtype=torch.float32)
    std = torch.tensor(xtr.reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1).std(1, dtype=np.float64), dtype=torch.float32)
    xtr, xte = normalize(xtr, mean, std), normalize(xte, mean, std)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    per_epoch = math.ceil(len(xtr) / args.batch)
    total = args.iters if args.iters is not None else int(round(args.epochs * per_epoch))

    def batches():
        perm, pos = None, len(xtr)
        while True:
            idx, have = [], 0
            while have < args.batch:
                if pos >= len(xtr):
                    perm, pos = torch.randperm(len(xtr), generator=gen), 0
                take = min(args.batch - have, len(xtr) - pos)
                idx.append(perm[pos:pos + take])
                pos, have = pos + take, have + take
            idx = torch.cat(idx)
            yield augment(xtr[idx], gen), ytr[idx]

    model = PreActResNet(args.net)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    train(model, opt, batches(), total, per_epoch, xte, yte, args)


def train(model, opt, batches, total, per_epoch, xte, yte, args):
    """train runs total SGD steps of model on the (x, y) batches, the rate set by
    args.lr, args.schedule and args.milestones. It prints the loss every 100 steps
    and, every args.eval_every steps and at the end, a JSON line with the test
    error (also appended to args.json when given)."""
    milestones = [int(m) for m in args.milestones.split(",") if m]
    log = open(args.json, "a") if args.json else None
    start, seen, loss_sum, wrong_sum, count = time.time(), 0, 0.0, 0, 0
    for k, (x, y) in zip(range(total), batches):
        lr = lr_at(k, total, args.lr, args.schedule, milestones)
        for group in opt.param_groups:
            group["lr"] = lr
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
        loss_sum += loss.item() * len(y)
        wrong_sum += (out.argmax(1) != y).sum().item()
        count += len(y)
        if (k + 1) % 100 == 0:
            print(f"iter {k + 1}/{total} loss {loss.item():.4f} lr {lr:.5f} "
                  f"{seen / (time.time() - start):.0f} img/s", file=sys.stderr, flush=True)
        last = k + 1 == total
        if last or args.eval_every and (k + 1) % args.eval_every == 0:
            err = test_error(model, xte, yte)
            rec = dict(iter=k + 1, epoch=round((k + 1) / per_epoch, 2), train_loss=loss_sum / count,
                       train_error=100.0 * wrong_sum / count, test_error=err, lr=lr,
                       images_per_s=seen / (time.time() - start), elapsed_s=time.time() - start)
            print(json.dumps(rec), flush=True)
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            loss_sum, wrong_sum, count = 0.0, 0, 0
    if log:
        log.close()


if __name__ == "__main__":
    main(sys.argv[1:])
