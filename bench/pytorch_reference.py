#!/usr/bin/env python3
"""pytorch_reference.py trains a textbook ResNet-20 in PyTorch on CIFAR-10, written
independently of resnetc, as an oracle for what a data set and a budget allow.

pytorch_train.py copies resnetc's choices (its network description, its
initialization, its augmentation order) to compare the frameworks like for like.
This script instead follows the common public PyTorch recipe for the original
ResNet-20 of He et al. (2015): post-activation basic blocks, option A shortcuts
(stride-2 subsampling, zero channels appended), Kaiming-normal initialization
(fan in) of every convolution and of the classifier, and the torchvision-style
pipeline: pad the 0-255 image by 4 black pixels, crop 32x32 at random, flip at
random, then normalize per channel. SGD with momentum 0.9 and weight decay 1e-4,
batch 128, learning rate 0.1 with a half-cosine decay (or the paper's steps).

If this script and a generated trainer give the same test error on the same data
and budget, the error is the data's and the budget's, not the trainer's.

Run it with the environment of bench/run.sh (see pytorch_train.py), e.g.:
  python3 bench/pytorch_reference.py --data ../shared/data/cifar-10-binary.tar.gz --epochs 20
"""

import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_train import augment, load_cifar10, train  # noqa: E402


class Block(nn.Module):
    """Block is the original basic residual block: conv-BN-ReLU-conv-BN, add, ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x
        if self.stride != 1 or self.extra:
            s = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))
        return F.relu(y + s)


class ResNet20(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(Block(cin, width, stride if i == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="CIFAR-10 binary: the .tar.gz or its folder")
    p.add_argument("--epochs", type=float, default=20)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--milestones", default="32000,48000")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=0, help="iterations between test evaluations (0: at the end only)")
    p.add_argument("--json", help="append one JSON line per evaluation to this file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr, xte, yte = load_cifar10(args.data)
    xtr, xte = torch.from_numpy(xtr).float(), torch.from_numpy(xte).float()
    mean = xtr.mean((0, 2, 3)).view(1, 3, 1, 1)
    std = xtr.std((0, 2, 3)).view(1, 3, 1, 1)
    xte = (xte - mean) / std
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    per_epoch = math.ceil(len(xtr) / 128)

    def batches():
        """batches yields batches of 128 in a new random order every epoch, the
        last of each epoch short, as a DataLoader does."""
        while True:
            perm = torch.randperm(len(xtr), generator=gen)
            for b in range(0, len(xtr), 128):
                idx = perm[b:b + 128]
                # Padding the 0-255 images pads them with black, as torchvision does.
                yield (augment(xtr[idx], gen) - mean) / std, ytr[idx]

    model = ResNet20()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    train(model, opt, batches(), int(round(args.epochs * per_epoch)), per_epoch, xte, yte, args)


if __name__ == "__main__":
    main(sys.argv[1:])
