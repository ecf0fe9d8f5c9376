"""Skeleton images and keypoint read-out for KeypointGAN (keypoint convention of ``lkgan_jax.conventions``).

``render_skeleton`` draws the edges of a pose as soft lines on a one-channel canvas in [-1, 1];
``soft_argmax`` turns heat-map logits back into (x, y) keypoints.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.conventions import coordinate_grid

Edges = Sequence[tuple[int, int]]

RENDER_FORMS = ("official", "squared")


def render_skeleton(
    points: jax.Array,
    edges: Edges,
    size: int,
    *,
    sigma: float = 0.2,
    form: str = "official",
    gamma: float = 903.0,
) -> jax.Array:
    """Points (B, K, 2) → skeleton image (B, size, size, 1) float32 in [-1, 1].

    For every pixel centre m and edge (a, b), s is the closest point of segment ab to m. ``official``:
    v = exp(-sqrt(|s - m|² + 1e-6) / sigma²); ``squared``: v = exp(-gamma |s - m|²). Edges combine by
    max; the image is 2v - 1. Differentiable in ``points``.
    """
    if form not in RENDER_FORMS:
        raise ValueError(f"render_skeleton: form={form!r} is not one of {RENDER_FORMS}")
    points = jnp.asarray(points, jnp.float32)
    ia = np.array([e[0] for e in edges], np.int32)
    ib = np.array([e[1] for e in edges], np.int32)
    a, b = points[:, ia], points[:, ib]  # (B, E, 2)
    grid = coordinate_grid(size, jnp)
    dx = grid[None, None, None, :] - a[..., 0, None, None]  # (B, E, 1, W): m - a, column part
    dy = grid[None, None, :, None] - a[..., 1, None, None]  # (B, E, H, 1): m - a, row part
    ab = b - a
    abx, aby = ab[..., 0, None, None], ab[..., 1, None, None]
    t = (dx * abx + dy * aby) / jnp.maximum(abx**2 + aby**2, 1e-6)
    t = jnp.clip(t, 0.0, 1.0)  # (B, E, H, W)
    d2 = (t * abx - dx) ** 2 + (t * aby - dy) ** 2  # |s - m|²
    if form == "official":
        v = jnp.exp(-jnp.sqrt(d2 + 1e-6) / sigma**2)
    else:
        v = jnp.exp(-gamma * d2)
    return (2.0 * jnp.max(v, axis=1) - 1.0)[..., None]


def soft_argmax(logits: jax.Array) -> jax.Array:
    """Heat-map logits (B, H, W, K) → keypoints (B, K, 2) as (x, y) in [-1, 1].

    x: softmax over columns of the logits averaged over rows, expectation of linspace(-1, 1, W);
    y: the same with rows and columns exchanged (marginal softmaxes, not a 2-D softmax).
    """
    logits = jnp.asarray(logits, jnp.float32)
    _, h, w, _ = logits.shape
    px = jax.nn.softmax(jnp.mean(logits, axis=1), axis=1)  # (B, W, K)
    py = jax.nn.softmax(jnp.mean(logits, axis=2), axis=1)  # (B, H, K)
    x = jnp.einsum("bwk,w->bk", px, coordinate_grid(w, jnp))
    y = jnp.einsum("bhk,h->bk", py, coordinate_grid(h, jnp))
    return jnp.stack([x, y], axis=-1)


def validate_edges(edges: Any, num_points: int, name: str = "model.edges") -> tuple[tuple[int, int], ...]:
    """Check a skeleton edge list against ``num_points`` landmarks; return it as a tuple of int pairs."""
    edges = tuple(edges)
    if not edges:
        raise ValueError(f"{name}: the edge list is empty")
    checked = []
    for edge in edges:
        if isinstance(edge, (str, bytes)) or not hasattr(edge, "__len__") or len(edge) != 2:
            raise ValueError(f"{name}: edge {edge!r} is not a pair of landmark indices")
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in edge):
            raise ValueError(f"{name}: edge {edge!r} is not a pair of integer landmark indices")
        i, j = int(edge[0]), int(edge[1])
        if not (0 <= i < num_points and 0 <= j < num_points):
            raise ValueError(f"{name}: edge ({i}, {j}) names a landmark outside 0..{num_points - 1} ({num_points} landmarks)")
        checked.append((i, j))
    return tuple(checked)


def swap_left_right(points: Any, pairs: Edges) -> Any:
    """Keypoints (..., K, 2) with the landmarks of each (i, j) in ``pairs`` exchanged (labels, not coordinates)."""
    perm = np.arange(points.shape[-2])
    for i, j in pairs:
        perm[i], perm[j] = j, i
    return points[..., perm, :]
