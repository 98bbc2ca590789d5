"""A small PyTorch classifier on scikit-learn's digits that logs to TensorBoard and prints nothing but a banner.

    python train.py --lr 0.05 --hidden 64 --epochs 6 --logdir runs

Metrics go to TensorBoard only (``SummaryWriter``: ``Loss/train``, ``Loss/val``, ``Accuracy/val`` per
epoch), as many PyTorch scripts do; nothing about them is printed.
"""

import argparse
import os

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.tensorboard import SummaryWriter

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--hidden", type=int, default=32)
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--logdir", default="runs", help="where the TensorBoard event files go")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.manual_seed(args.seed)
torch.set_num_threads(1)
features, labels = load_digits(return_X_y=True)
x_train, x_val, y_train, y_val = train_test_split(features / 16.0, labels, test_size=0.25, random_state=args.seed)
x_train, x_val = (torch.tensor(a, dtype=torch.float32) for a in (x_train, x_val))
y_train, y_val = (torch.tensor(a) for a in (y_train, y_val))
model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
loss_function = nn.CrossEntropyLoss()
writer = SummaryWriter(log_dir=os.path.join(args.logdir, f"lr{args.lr}_h{args.hidden}"))
print(f"logging to {writer.log_dir}")

for epoch in range(args.epochs):
    model.train()
    order = torch.randperm(len(x_train))
    total = 0.0
    for start in range(0, len(order), args.batch_size):
        chosen = order[start : start + args.batch_size]
        optimizer.zero_grad()
        loss = loss_function(model(x_train[chosen]), y_train[chosen])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(chosen)
    model.eval()
    with torch.no_grad():
        logits = model(x_val)
        writer.add_scalar("Loss/train", total / len(x_train), epoch)
        writer.add_scalar("Loss/val", loss_function(logits, y_val).item(), epoch)
        writer.add_scalar("Accuracy/val", (logits.argmax(1) == y_val).float().mean().item(), epoch)
    writer.flush()
writer.close()
