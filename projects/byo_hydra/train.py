"""A Hydra app: a one-hidden-layer network on scikit-learn's digits (numpy), logging Hugging Face-style dict lines.

    python train.py optim.lr=0.05 model.hidden=64 trainer.epochs=4 +trainer.label_smoothing=0.1

Its options are Hydra overrides (no dashes, dotted keys, ``+key=value`` for a key the config
does not have). Each epoch it prints ``{'loss': ..., 'learning_rate': ..., 'epoch': ...}`` and
``{'eval_loss': ..., 'eval_accuracy': ..., 'epoch': ...}``, as the Hugging Face Trainer does.
"""

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def activation(name, z):
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1 - t * t
    raise ValueError(f"unknown activation {name!r} (model.activation: relu or tanh)")


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg))
    smoothing = float(cfg.trainer.get("label_smoothing", 0.0))
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=cfg.trainer.seed)
    rng = np.random.default_rng(cfg.trainer.seed)
    w1 = rng.normal(0, 0.1, (64, cfg.model.hidden))
    w2 = rng.normal(0, 0.1, (cfg.model.hidden, 10))
    v1, v2 = np.zeros_like(w1), np.zeros_like(w2)

    def predict(inputs):
        h, dh = activation(cfg.model.activation, inputs @ w1)
        logits = h @ w2
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return h, dh, p / p.sum(axis=1, keepdims=True)

    for epoch in range(1, cfg.trainer.epochs + 1):
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), cfg.trainer.batch_size):
            chosen = order[start : start + cfg.trainer.batch_size]
            inputs, targets = x_train[chosen], y_train[chosen]
            h, dh, p = predict(inputs)
            wanted = np.full_like(p, smoothing / 10)
            wanted[np.arange(len(targets)), targets] += 1 - smoothing
            losses.append(float(-(wanted * np.log(p + 1e-12)).sum(axis=1).mean()))
            grad_logits = (p - wanted) / len(targets)
            g2 = h.T @ grad_logits
            g1 = inputs.T @ ((grad_logits @ w2.T) * dh)
            v1 = cfg.optim.momentum * v1 - cfg.optim.lr * g1
            v2 = cfg.optim.momentum * v2 - cfg.optim.lr * g2
            w1 += v1
            w2 += v2
        print({"loss": round(float(np.mean(losses)), 4), "learning_rate": cfg.optim.lr, "epoch": float(epoch)})
        _, _, p = predict(x_val)
        eval_loss = float(-np.log(p[np.arange(len(y_val)), y_val] + 1e-12).mean())
        eval_accuracy = float((p.argmax(axis=1) == y_val).mean())
        print({"eval_loss": round(eval_loss, 4), "eval_accuracy": round(eval_accuracy, 4), "epoch": float(epoch)})


if __name__ == "__main__":
    main()
