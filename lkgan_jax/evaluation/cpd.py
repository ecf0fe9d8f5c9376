"""CPD, the part-disentanglement score (docs/design.md §7.4).

For N/2 random pairs (a, b) of generated samples and each part group g: swap the part embeddings of
g (or, for the background group, the background embedding) from b into a, render, and take the
difference map D_g = ‖I_swapped − I_a‖ over RGB per pixel (B, H, W). Per pair, the correlation of
D_g and D_h over pixels for every two groups gives a G×G matrix; averaged over pairs → C.

  CPD = 1 − mean of the off-diagonal entries of C

Correlations are Pearson's, clipped at 0: anti-correlated maps (a change here, none there) count as
no shared change, so a generator whose parts touch disjoint pixels scores exactly 1 and one whose every
part changes the same pixels in the same way scores 0. The unclipped score is reported as ``cpd_raw``.
A map with no change at all (zero variance) correlates 0 with everything. With the background as a
group, ``cpd_parts`` and ``cpd_background_correlation`` keep the parts and the background apart.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax import parallel
from lkgan_jax.models.latent import Latent

# (variables, Latent (B, ...)) -> images (B, H, W, 3); the variables are an argument, not a closure,
# so a large generator's weights never become constants of the compiled program.
Renderer = Callable[[Any, Latent], jax.Array]


@dataclasses.dataclass(frozen=True)
class PartGroups:
    """Which parts are swapped together: ``groups`` of part indices, plus the background as a group."""

    groups: tuple[tuple[int, ...], ...]
    background: bool = False

    @classmethod
    def each_part(cls, num_parts: int, background: bool = False) -> "PartGroups":
        return cls(tuple((k,) for k in range(num_parts)), background)

    def check(self, num_parts: int) -> None:
        flat = [k for group in self.groups for k in group]
        if not self.groups or any(not group for group in self.groups):
            raise ValueError("CPD part groups must be non-empty")
        if any(not 0 <= k < num_parts for k in flat) or len(set(flat)) != len(flat):
            raise ValueError(f"CPD part groups {self.groups} must name distinct parts in 0..{num_parts - 1}")

    @property
    def size(self) -> int:
        return len(self.groups) + int(self.background)

    def masks(self, num_parts: int) -> np.ndarray:
        """(G, K) bool: the parts of each group (all False for the background group)."""
        masks = np.zeros((self.size, num_parts), bool)
        for g, group in enumerate(self.groups):
            masks[g, list(group)] = True
        return masks


def swapped_latents(a: Latent, b: Latent, part_masks: jax.Array, background: bool) -> Latent:
    """(G·P) latents: for each group g, ``a`` with the group's parts (or background) taken from ``b``.

    ``a`` and ``b`` have batch P; ``part_masks`` is (G, K) bool, the last row the background group when
    ``background``. Group-major order: rows g·P … g·P + P − 1 belong to group g.
    """
    groups = part_masks.shape[0]
    is_background = jnp.zeros((groups,), bool).at[-1].set(background)

    def one(mask: jax.Array, swap_background: jax.Array) -> Latent:
        embeddings = jnp.where(mask[None, :, None], b.part_embeddings, a.part_embeddings)
        back = jnp.where(swap_background, b.background_embedding, a.background_embedding)
        return a.replace(part_embeddings=embeddings, background_embedding=back)

    stacked = jax.vmap(one)(part_masks, is_background)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), stacked)


def difference_maps(images: jax.Array, base: jax.Array) -> jax.Array:
    """(G, P, H, W, 3) edited and (P, H, W, 3) base images → (G, P, H, W) per-pixel RGB L2 differences."""
    return jnp.sqrt(jnp.sum(jnp.square(images - base[None]), axis=-1))


def map_correlations(maps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Difference maps (G, P, H, W) → per-pair Pearson correlations (P, G, G): (clipped at 0, raw)."""
    g, p = maps.shape[:2]
    flat = maps.reshape(g, p, -1).astype(jnp.float32)
    centred = flat - jnp.mean(flat, axis=-1, keepdims=True)
    norm = jnp.linalg.norm(centred, axis=-1, keepdims=True)
    unit = jnp.where(norm > 0, centred / jnp.where(norm > 0, norm, 1.0), 0.0)
    raw = jnp.einsum("gpn,hpn->pgh", unit, unit)
    return jnp.maximum(raw, 0.0), raw


def cpd_score(matrix: np.ndarray) -> float:
    """1 − mean of the off-diagonal entries of a (G, G) correlation matrix."""
    matrix = np.asarray(matrix, np.float64)
    off = ~np.eye(len(matrix), dtype=bool)
    return float(1.0 - matrix[off].mean())


def background_scores(matrix: np.ndarray, background: bool) -> dict[str, float]:
    """With the background as the last group: the parts' own CPD and the background's mean correlation.

    Adding the background as a group dilutes ``cpd`` (it shares few pixels with any part), which is not
    better disentanglement, so the parts' block is scored on its own as ``cpd_parts`` and the
    background's mean clipped correlation with the part groups is ``cpd_background_correlation``.
    """
    if not background:
        return {}
    matrix = np.asarray(matrix, np.float64)
    scores = {"cpd_background_correlation": float(matrix[-1, :-1].mean())} if len(matrix) > 1 else {}
    if len(matrix) > 2:
        scores["cpd_parts"] = cpd_score(matrix[:-1, :-1])
    return scores


def make_pair_correlations(render: Renderer, part_masks: np.ndarray, background: bool) -> Callable:
    """A jitted ``(variables, a, b) -> (clipped (P, G, G), raw (P, G, G))`` per pair of the batch."""
    masks = jnp.asarray(part_masks)

    @jax.jit
    def correlations(variables: Any, a: Latent, b: Latent) -> tuple[jax.Array, jax.Array]:
        pairs = a.keypoints.shape[0]
        base = render(variables, a)
        edited = render(variables, swapped_latents(a, b, masks, background))
        edited = edited.reshape((masks.shape[0], pairs) + base.shape[1:])
        return map_correlations(difference_maps(edited, base))

    return correlations


@functools.lru_cache(maxsize=16)
def _cached_pair_correlations(render: Renderer, groups: PartGroups, num_parts: int) -> Callable:
    """One compiled program per renderer and grouping, so repeated evaluations (e.g. during training) reuse it."""
    return make_pair_correlations(render, groups.masks(num_parts), groups.background)


def compute_cpd(
    render: Renderer,
    variables: Any,
    latents_of: Callable[[np.ndarray], Latent],
    num_parts: int,
    num_pairs: int,
    groups: PartGroups,
    pairs_per_call: int,
    seed: int = 0,
) -> dict[str, object]:
    """CPD over ``num_pairs`` pairs of samples (seeds ``2i``, ``2i+1`` offset by ``seed``).

    ``latents_of(seeds (P,)) -> Latent`` gives the samples, ``render(variables, latent)`` renders any batch.
    Pairs are processed ``pairs_per_call`` at a time (the last call padded with repeats that are
    not counted, so one compiled program serves every call); in a multi-process job each process takes
    a share of the calls and the per-pair correlations are summed in pair order (``parallel.sum_rows``).
    Returns ``cpd``, ``cpd_raw``, ``cpd_matrix`` (G×G list) and the settings.
    """
    if num_pairs <= 0 or pairs_per_call <= 0:
        raise ValueError(f"CPD needs positive num_pairs and pairs_per_call, got {num_pairs}, {pairs_per_call}")
    groups.check(num_parts)
    correlations = _cached_pair_correlations(render, groups, num_parts)

    def pair_correlations(index: np.ndarray) -> tuple[jax.Array, jax.Array]:
        return correlations(variables, latents_of(seed + 2 * index), latents_of(seed + 2 * index + 1))

    total_clipped, total_raw = parallel.sum_rows(pair_correlations, num_pairs, pairs_per_call)
    matrix = total_clipped / num_pairs
    return {
        **background_scores(matrix, groups.background),
        "cpd": cpd_score(matrix),
        "cpd_raw": cpd_score(total_raw / num_pairs),
        "cpd_matrix": matrix.tolist(),
        "cpd_num_pairs": num_pairs,
        "cpd_num_samples": 2 * num_pairs,
        "cpd_groups": [list(g) for g in groups.groups],
        "cpd_background": groups.background,
    }


def parse_groups(text: str | None, num_parts: int, background: bool) -> PartGroups:
    """'0,1;2;3,4' → groups ((0, 1), (2,), (3, 4)); None or '' → one group per part."""
    if not text:
        return PartGroups.each_part(num_parts, background)
    try:
        groups = tuple(tuple(int(k) for k in group.split(",")) for group in text.split(";"))
    except ValueError:
        raise ValueError(f"bad CPD part groups {text!r}; write them like '0,1;2;3,4'") from None
    result = PartGroups(groups, background)
    result.check(num_parts)
    return result
