"""Softmax regression on scikit-learn's digits with numpy, printing Keras-style progress bars.

    python train.py --lr 0.1 --epochs 8 --batch-size 64 --l2 1e-4 [--shuffle | --no-shuffle]

An ordinary argparse script: options with a space before the value, a boolean pair, no framework
import. Each epoch prints a progress bar that redraws itself with carriage returns and ends with
``- loss: ... - accuracy: ... - val_loss: ... - val_accuracy: ...``, as Keras' fit() does.
"""

import argparse
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--l2", type=float, default=0.0, help="weight decay")
parser.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

features, labels = load_digits(return_X_y=True)
features = features / 16.0
x_train, x_val, y_train, y_val = train_test_split(features, labels, test_size=0.25, random_state=args.seed)
rng = np.random.default_rng(args.seed)
weights = np.zeros((features.shape[1], 10))
bias = np.zeros(10)


def forward(x):
    logits = x @ weights + bias
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def evaluate(x, y):
    p = forward(x)
    return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()), float((p.argmax(axis=1) == y).mean())


steps = int(np.ceil(len(x_train) / args.batch_size))
for epoch in range(1, args.epochs + 1):
    print(f"Epoch {epoch}/{args.epochs}")
    order = rng.permutation(len(x_train)) if args.shuffle else np.arange(len(x_train))
    started = time.time()
    for step in range(steps):
        chosen = order[step * args.batch_size : (step + 1) * args.batch_size]
        x, y = x_train[chosen], y_train[chosen]
        p = forward(x)
        p[np.arange(len(y)), y] -= 1
        weights -= args.lr * (x.T @ p / len(y) + args.l2 * weights)
        bias -= args.lr * p.mean(axis=0)
        done = (step + 1) * 30 // steps
        bar = "=" * max(done - 1, 0) + (">" if done < 30 else "=") + "." * (30 - done)
        sys.stdout.write(f"\r{step + 1}/{steps} [{bar}]")
        sys.stdout.flush()
    loss, accuracy = evaluate(x_train, y_train)
    val_loss, val_accuracy = evaluate(x_val, y_val)
    elapsed = time.time() - started
    sys.stdout.write(
        f" - {elapsed:.0f}s - loss: {loss:.4f} - accuracy: {accuracy:.4f}"
        f" - val_loss: {val_loss:.4f} - val_accuracy: {val_accuracy:.4f}\n"
    )
