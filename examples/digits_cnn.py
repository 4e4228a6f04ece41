"""A small CNN in NumPy, pooled by ndpool, trained on scikit-learn's digits.

Everything but the pooling is written here: convolution by im2col, ReLU, a
linear head, softmax cross-entropy and Adam. The pooling layers are
``ndpool.nn.MaxPool2d`` and ``ndpool.nn.AvgPool2d``, whose ``backward`` gives
the input gradient of the last call.

Architecture (input 1x8x8)::

    conv 3x3 (16, pad 1) -> ReLU -> MaxPool2d(2)   -> 16x4x4
    conv 3x3 (32, pad 1) -> ReLU -> AvgPool2d(2)   -> 32x2x2
    flatten -> linear 128 -> 10 -> softmax cross-entropy

Run ``python examples/digits_cnn.py`` to train and print the test accuracy
and the time taken.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ndpool import nn

Array = npt.NDArray[Any]


def im2col(x: Array, k: int, pad: int) -> Array:
    """(N, C, H, W) -> (N, H*W, C*k*k) patches of a stride-1 'same' conv."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    # (N, C, H, W, k, k) -> (N, H, W, C, k, k)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, h * w, c * k * k)


def col2im(cols: Array, shape: tuple[int, ...], k: int, pad: int) -> Array:
    """Adjoint of :func:`im2col`: add every patch back where it came from."""
    n, c, h, w = shape
    patches = cols.reshape(n, h, w, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, :, i : i + h, j : j + w] += patches[:, :, i, j]
    return out[:, :, pad : pad + h, pad : pad + w]


class Conv2d:
    """Stride-1 'same' convolution by im2col and one matrix product."""

    def __init__(self, c_in: int, c_out: int, k: int, rng: np.random.Generator):
        scale = np.sqrt(2.0 / (c_in * k * k))
        self.w = rng.standard_normal((c_in * k * k, c_out)).astype(np.float32) * scale
        self.b = np.zeros(c_out, dtype=np.float32)
        self.k, self.pad = k, k // 2

    def __call__(self, x: Array) -> Array:
        self.shape = x.shape
        self.cols = im2col(x, self.k, self.pad)  # (N, HW, CKK)
        n, _, h, w = x.shape
        out = self.cols @ self.w + self.b  # (N, HW, C_out)
        return out.transpose(0, 2, 1).reshape(n, -1, h, w)

    def backward(self, g: Array) -> Array:
        n, c_out = g.shape[:2]
        g2 = g.reshape(n, c_out, -1).transpose(0, 2, 1)  # (N, HW, C_out)
        self.dw = np.einsum("npk,npo->ko", self.cols, g2)
        self.db = g2.sum(axis=(0, 1))
        return col2im(g2 @ self.w.T, self.shape, self.k, self.pad)

    def params(self) -> list[tuple[Array, Array]]:
        return [(self.w, self.dw), (self.b, self.db)]


class ReLU:
    def __call__(self, x: Array) -> Array:
        self.mask = x > 0
        return x * self.mask

    def backward(self, g: Array) -> Array:
        return g * self.mask


class Linear:
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator):
        scale = np.sqrt(2.0 / n_in)
        self.w = rng.standard_normal((n_in, n_out)).astype(np.float32) * scale
        self.b = np.zeros(n_out, dtype=np.float32)

    def __call__(self, x: Array) -> Array:
        self.x = x
        return x @ self.w + self.b

    def backward(self, g: Array) -> Array:
        self.dw = self.x.T @ g
        self.db = g.sum(axis=0)
        return g @ self.w.T

    def params(self) -> list[tuple[Array, Array]]:
        return [(self.w, self.dw), (self.b, self.db)]


class Flatten:
    def __call__(self, x: Array) -> Array:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, g: Array) -> Array:
        return g.reshape(self.shape)


class Adam:
    def __init__(self, lr: float = 3e-3, b1: float = 0.9, b2: float = 0.999):
        self.lr, self.b1, self.b2, self.t = lr, b1, b2, 0
        self.m: dict[int, Array] = {}
        self.v: dict[int, Array] = {}

    def step(self, params: list[tuple[Array, Array]]) -> None:
        self.t += 1
        for p, g in params:
            m = self.m.setdefault(id(p), np.zeros_like(p))
            v = self.v.setdefault(id(p), np.zeros_like(p))
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            m_hat = m / (1 - self.b1**self.t)
            v_hat = v / (1 - self.b2**self.t)
            p -= (self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(p.dtype)


def softmax_cross_entropy(logits: Array, labels: Array) -> tuple[float, Array]:
    """Mean loss and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(probs[np.arange(n), labels] + 1e-12).mean()
    grad = probs
    grad[np.arange(n), labels] -= 1
    return float(loss), grad / n


def build(rng: np.random.Generator) -> list[Any]:
    return [
        Conv2d(1, 16, 3, rng),
        ReLU(),
        nn.MaxPool2d(2),
        Conv2d(16, 32, 3, rng),
        ReLU(),
        nn.AvgPool2d(2),
        Flatten(),
        Linear(32 * 2 * 2, 10, rng),
    ]


def forward(layers: list[Any], x: Array) -> Array:
    for layer in layers:
        x = layer(x)
    return x


def main(epochs: int = 12, seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """Train, then return the test accuracy, final loss and wall time."""
    start = time.perf_counter()
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    rng = np.random.default_rng(seed)
    layers = build(rng)
    opt = Adam()
    loss = float("nan")
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            logits = forward(layers, x_train[batch])
            loss, g = softmax_cross_entropy(logits, y_train[batch])
            for layer in reversed(layers):
                g = layer.backward(g)
            params = [p for layer in layers if hasattr(layer, "params")
                      for p in layer.params()]  # fmt: skip
            opt.step(params)
    predictions = forward(layers, x_test).argmax(axis=1)
    return {
        "test_accuracy": float((predictions == y_test).mean()),
        "final_loss": loss,
        "epochs": epochs,
        "seconds": time.perf_counter() - start,
    }


if __name__ == "__main__":
    result = main()
    print(
        f"test accuracy {result['test_accuracy']:.2%} after {result['epochs']} "
        f"epochs in {result['seconds']:.1f} s (final batch loss "
        f"{result['final_loss']:.3f})"
    )
