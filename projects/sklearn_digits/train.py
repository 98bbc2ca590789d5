#!/usr/bin/env python
"""Train a scikit-learn classifier on the digits data set (CPU only, sub-second).

Uses the same fixed 80/20 stratified split as ``projects/mnist/train_mnist.py``
and reports held-out accuracy and training time through
:func:`mlframework.metrics.log` (a no-op when run by hand).

Example::

    python train.py --model=svc --C=10 --gamma=0.001
"""

from __future__ import annotations

import argparse
import math
import sys
import time


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def gamma_value(text: str) -> float | str:
    if text in ("scale", "auto"):
        return text
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'scale', 'auto' or a number > 0, got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a scikit-learn classifier on the digits data set")
    parser.add_argument(
        "--model",
        choices=["svc", "logreg", "knn"],
        default="svc",
        help="classifier: RBF-kernel SVM, logistic regression or k-nearest neighbours",
    )
    parser.add_argument("--C", type=positive_float, default=1.0, help="inverse regularisation strength (svc, logreg)")
    parser.add_argument(
        "--gamma",
        type=gamma_value,
        default="scale",
        help="RBF kernel coefficient: a number > 0, 'scale' or 'auto' (svc)",
    )
    parser.add_argument("--neighbors", type=positive_int, default=5, help="number of neighbours (knn)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the model (the data split is fixed)")
    args = parser.parse_args(argv)
    if args.model == "knn" and args.neighbors > 1437:
        parser.error(f"--neighbors must be <= 1437 (the training set size), got {args.neighbors}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    from mlframework import metrics

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float64)  # pixel values 0..16 -> [0, 1]
    y = digits.target
    # Fixed split, independent of --seed, so every trial is scored on the same data.
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)

    if args.model == "svc":
        model = SVC(C=args.C, gamma=args.gamma, kernel="rbf", random_state=args.seed)
        desc = f"svc C={args.C} gamma={args.gamma}"
    elif args.model == "logreg":
        model = LogisticRegression(C=args.C, max_iter=2000, random_state=args.seed)
        desc = f"logreg C={args.C}"
    else:
        model = KNeighborsClassifier(n_neighbors=args.neighbors)
        desc = f"knn neighbors={args.neighbors}"

    start = time.perf_counter()
    model.fit(x_train, y_train)
    train_time = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(x_test) == y_test))

    print(f"{desc} accuracy={accuracy:.4f} train_time_s={train_time:.4f}", flush=True)
    metrics.log(accuracy=accuracy, train_time_s=train_time)
    return 0


if __name__ == "__main__":
    sys.exit(main())
