"""A character-level bigram language model trained with numpy, in the style of small GPT trainers.

    python train.py config/train_tiny.py --learning_rate=0.5 --compile=False

Defaults are module globals; a config file and --key=value overrides replace them (overrides.py).
It reads data/ relative to the working directory (run it from this folder), prints its config,
a line per iteration and an evaluation every eval_interval steps, and writes out_dir/ckpt.pt.
"""

import os
import pickle
import time

import numpy as np

# ---- defaults (overridable)
out_dir = "out"
dataset = "tiny"
max_iters = 30
eval_interval = 10
batch_size = 64
learning_rate = 1.0
gradient_accumulation_steps = 2
compile = True  # stands for torch.compile: a slow start-up that False avoids
seed = 1337
# ----
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
with open("overrides.py") as overrides:
    exec(overrides.read())
config = {k: globals()[k] for k in config_keys}
for key, value in config.items():
    print(f"{key} = {value}")

with open(os.path.join("data", dataset, "input.txt"), encoding="utf-8") as source:
    text = source.read()
chars = sorted(set(text))
vocab = len(chars)
index = {c: i for i, c in enumerate(chars)}
data = np.array([index[c] for c in text], dtype=np.int64)
split = int(0.9 * len(data))
train_data, val_data = data[:split], data[split:]
print(f"vocab size: {vocab}")
print(f"tokens per iteration will be: {gradient_accumulation_steps * batch_size:,}")

rng = np.random.default_rng(seed)
logits_table = np.zeros((vocab, vocab))
print(f"number of parameters: {logits_table.size / 1e3:.2f}K")
if compile:
    print("compiling the model... (takes a while)")
    time.sleep(2.0)


def batch(source):
    positions = rng.integers(0, len(source) - 1, size=batch_size)
    return source[positions], source[positions + 1]


def loss_and_grad(inputs, targets):
    logits = logits_table[inputs]
    logits = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    loss = -np.log(probabilities[np.arange(len(targets)), targets] + 1e-12).mean()
    probabilities[np.arange(len(targets)), targets] -= 1
    grad = np.zeros_like(logits_table)
    np.add.at(grad, inputs, probabilities / len(targets))
    return loss, grad


def estimate(source):
    return float(np.mean([loss_and_grad(*batch(source))[0] for _ in range(10)]))


os.makedirs(out_dir, exist_ok=True)
for step in range(max_iters + 1):
    if step % eval_interval == 0:
        print(f"step {step}: train loss {estimate(train_data):.4f}, val loss {estimate(val_data):.4f}")
        with open(os.path.join(out_dir, "ckpt.pt"), "wb") as handle:
            pickle.dump({"model": logits_table, "step": step, "config": config}, handle)
    if step == max_iters:
        break
    started = time.time()
    for _ in range(gradient_accumulation_steps):
        loss, grad = loss_and_grad(*batch(train_data))
        logits_table -= learning_rate * grad / gradient_accumulation_steps
    print(f"iter {step}: loss {loss:.4f}, time {(time.time() - started) * 1000:.2f}ms")
