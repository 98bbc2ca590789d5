#!/usr/bin/env python
"""Train a small MLP on the scikit-learn digits data set (8x8 images, 10 classes).

A PyTorch stand-in for chainer's ``examples/mnist/train_mnist.py`` with the
same core options (``--gpu``, ``--batchsize``, ``--epoch``, ``--unit``). The
digits data ship inside scikit-learn, so nothing is downloaded.

Every epoch prints one line and reports held-out loss/accuracy through
:func:`mlframework.metrics.log` (a no-op when run by hand).

Example::

    python train_mnist.py --gpu=-1 --batchsize=100 --epoch=15 --unit=100
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train an MLP on scikit-learn's digits data set")
    parser.add_argument(
        "--gpu",
        "-g",
        type=int,
        default=-1,
        help="GPU id (negative value = CPU); falls back to CPU with a warning if CUDA is unavailable",
    )
    parser.add_argument("--batchsize", "-b", type=positive_int, default=100, help="number of images in each mini-batch")
    parser.add_argument("--epoch", "-e", type=positive_int, default=20, help="number of sweeps over the training data")
    parser.add_argument("--unit", "-u", type=positive_int, default=100, help="number of units in each hidden layer")
    parser.add_argument("--lr", type=positive_float, default=0.01, help="learning rate (Adam)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for weight init and batch shuffling")
    parser.add_argument(
        "--out",
        "-o",
        default=None,
        help="directory to save the final model state_dict as model.pt (default: do not save)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    # Heavy imports after argument parsing so --help and bad options are fast.
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch import nn

    from mlframework import metrics

    # Several trials share a small machine: one intra-op thread unless overridden
    # (TORCH_NUM_THREADS, or the standard OMP_NUM_THREADS).
    threads = os.environ.get("TORCH_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    try:
        torch.set_num_threads(max(1, int(threads)) if threads else 1)
    except ValueError:
        print(f"warning: ignoring invalid thread count {threads!r}; using 1", file=sys.stderr, flush=True)
        torch.set_num_threads(1)

    if args.gpu >= 0:
        if torch.cuda.is_available() and args.gpu < torch.cuda.device_count():
            device = torch.device(f"cuda:{args.gpu}")
        else:
            print(
                f"warning: --gpu={args.gpu} requested but CUDA device {args.gpu} is not available; using CPU",
                file=sys.stderr,
                flush=True,
            )
            device = torch.device("cpu")
    else:
        device = torch.device("cpu")

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # pixel values 0..16 -> [0, 1]
    y = digits.target.astype(np.int64)
    # Fixed split, independent of --seed, so every trial is scored on the same data.
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)

    x_train_t = torch.from_numpy(x_train).to(device)
    y_train_t = torch.from_numpy(y_train).to(device)
    x_test_t = torch.from_numpy(x_test).to(device)
    y_test_t = torch.from_numpy(y_test).to(device)

    model = nn.Sequential(
        nn.Linear(x.shape[1], args.unit),
        nn.ReLU(),
        nn.Linear(args.unit, args.unit),
        nn.ReLU(),
        nn.Linear(args.unit, 10),
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    print(
        f"device: {device}  # unit: {args.unit}  # minibatch: {args.batchsize}  # epoch: {args.epoch}  "
        f"lr: {args.lr}  train/test: {len(y_train)}/{len(y_test)}",
        flush=True,
    )

    start = time.perf_counter()
    n = len(y_train)
    for epoch in range(1, args.epoch + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(n)).to(device)
        train_loss_sum = 0.0
        for i in range(0, n, args.batchsize):
            idx = order[i : i + args.batchsize]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train_t[idx]), y_train_t[idx])
            loss.backward()
            optimizer.step()
            train_loss_sum += loss.item() * len(idx)

        model.eval()
        with torch.no_grad():
            logits = model(x_test_t)
            val_loss = loss_fn(logits, y_test_t).item()
            accuracy = (logits.argmax(dim=1) == y_test_t).sum().item() / len(y_test)
        train_loss = train_loss_sum / n

        print(
            f"epoch {epoch}/{args.epoch} loss={val_loss:.4f} accuracy={accuracy:.4f} train_loss={train_loss:.4f}",
            flush=True,
        )
        metrics.log(step=epoch, loss=val_loss, accuracy=accuracy, train_loss=train_loss)

    elapsed = time.perf_counter() - start
    print(f"done in {elapsed:.2f}s; final held-out accuracy={accuracy:.4f}", flush=True)

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "model.pt")
        torch.save(model.state_dict(), path)
        print(f"saved model to {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
