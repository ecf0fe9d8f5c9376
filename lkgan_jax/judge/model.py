"""The judge: a supervised network on real procedural faces that scores generated ones (docs/design.md §7.7).

images (B, S, S, 3) in [-1, 1] → resize to ``input_size`` → residual down blocks (the detector's)
→ global mean → dense + LReLU → **features** (B, F) → linear heads:

- landmarks (B, L, 2), (x, y) in [-1, 1] (docs/design.md §1);
- attributes (B, A), standardised: (attribute − mean) / std of the training faces.

The features are the judge's penultimate layer, the space of ``judge_fd``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lkgan_jax.detection.detector import DownBlock


class JudgeOutput(NamedTuple):
    features: jax.Array  # (B, F)
    landmarks: jax.Array  # (B, L, 2)
    attributes: jax.Array  # (B, A), standardised


class Judge(nn.Module):
    num_landmarks: int
    num_attributes: int
    input_size: int
    channels: Sequence[int]
    feature_dim: int
    slope: float = 0.2

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> JudgeOutput:
        b, s = images.shape[0], images.shape[1]
        x = images.astype(jnp.float32)
        if s != self.input_size:
            x = jax.image.resize(x, (b, self.input_size, self.input_size, 3), method="bilinear", antialias=s > self.input_size)
        for i, features in enumerate(self.channels):
            x = DownBlock(features, self.slope, jnp.float32, name=f"down_{i}")(x, train)
        pooled = jnp.mean(x, axis=(1, 2))
        features = nn.leaky_relu(nn.Dense(self.feature_dim, name="features")(pooled), self.slope)
        landmarks = nn.Dense(2 * self.num_landmarks, name="landmarks")(features).reshape(b, self.num_landmarks, 2)
        attributes = nn.Dense(self.num_attributes, name="attributes")(features)
        return JudgeOutput(features, landmarks, attributes)


def make_judge(judge_config: Any, num_landmarks: int, num_attributes: int) -> Judge:
    """The judge of a ``judge`` config section."""
    c = judge_config
    if c.input_size % 2 ** len(c.channels):
        raise ValueError(f"judge.input_size={c.input_size} is not divisible by 2^len(judge.channels)")
    return Judge(num_landmarks, num_attributes, c.input_size, tuple(c.channels), c.feature_dim)
