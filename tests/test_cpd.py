"""CPD: correlations of constructed difference maps, disjoint / entangled toy generators, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.evaluation.cpd import (
    PartGroups,
    background_scores,
    compute_cpd,
    cpd_score,
    map_correlations,
    parse_groups,
    swapped_latents,
)
from lkgan_jax.models.latent import Latent

K, D, S = 4, 3, 8


def _latents(seeds: np.ndarray) -> Latent:
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    embeddings = jax.vmap(lambda k: jax.random.normal(k, (K, D)))(keys)
    background = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (D,)))(keys)
    return Latent.create(jnp.zeros((len(seeds), K, 2)), embeddings, background, 0.01)


def _disjoint_render(variables, latent: Latent) -> jax.Array:
    """Part k paints columns 2k, 2k+1 with its embedding; the background paints nothing."""
    colours = jnp.tanh(latent.part_embeddings)  # (B, K, 3)
    columns = jnp.repeat(colours, 2, axis=1)  # (B, 2K = S, 3)
    return jnp.broadcast_to(columns[:, None], (latent.keypoints.shape[0], S, S, 3))


def _entangled_render(variables, latent: Latent) -> jax.Array:
    """Every part scales the same spatial pattern: all difference maps are proportional."""
    pattern = jnp.linspace(0.0, 1.0, S * S).reshape(S, S)
    amount = jnp.sum(latent.part_embeddings[..., 0] * jnp.arange(1, K + 1), axis=-1)  # (B,)
    return jnp.broadcast_to((amount[:, None, None] * pattern)[..., None], (latent.keypoints.shape[0], S, S, 3))


def test_correlations_of_constructed_maps():
    rng = np.random.default_rng(0)
    base = rng.uniform(size=(1, 6, 6))
    maps = np.stack([base, 2 * base + 1, base.max() - base, np.full_like(base, 0.5), rng.uniform(size=(1, 6, 6))])
    clipped, raw = map(np.asarray, map_correlations(jnp.asarray(maps, jnp.float32)))
    assert raw[0, 0, 1] == pytest.approx(1.0, abs=1e-5)  # affine copies correlate perfectly
    assert raw[0, 0, 2] == pytest.approx(-1.0, abs=1e-5) and clipped[0, 0, 2] == 0.0  # anti-correlated: clipped to 0
    assert raw[0, 0, 3] == 0.0 and raw[0, 3, 3] == 0.0  # a constant map correlates with nothing
    expected = np.corrcoef(base.ravel(), maps[4].ravel())[0, 1]
    assert raw[0, 0, 4] == pytest.approx(expected, abs=1e-5)
    assert cpd_score(np.eye(3)) == 1.0 and cpd_score(np.ones((3, 3))) == 0.0
    assert cpd_score(np.array([[1.0, 0.2], [0.4, 1.0]])) == pytest.approx(0.7)


def test_swapped_latents_take_exactly_the_group_from_the_partner():
    a, b = _latents(np.arange(3)), _latents(np.arange(10, 13))
    groups = PartGroups(((0, 2), (1,)), background=True)
    out = swapped_latents(a, b, jnp.asarray(groups.masks(K)), True)
    assert out.part_embeddings.shape == (3 * 3, K, D)
    np.testing.assert_array_equal(out.part_embeddings[0:3, [0, 2]], b.part_embeddings[:, [0, 2]])
    np.testing.assert_array_equal(out.part_embeddings[0:3, [1, 3]], a.part_embeddings[:, [1, 3]])
    np.testing.assert_array_equal(out.background_embedding[0:6], jnp.concatenate([a.background_embedding] * 2))
    np.testing.assert_array_equal(out.part_embeddings[6:9], a.part_embeddings)
    np.testing.assert_array_equal(out.background_embedding[6:9], b.background_embedding)


def test_disjoint_parts_score_one_and_entangled_parts_zero():
    groups = PartGroups.each_part(K)
    disjoint = compute_cpd(_disjoint_render, None, _latents, K, num_pairs=6, groups=groups, pairs_per_call=4)
    assert disjoint["cpd"] == pytest.approx(1.0, abs=1e-6)
    assert disjoint["cpd_raw"] > 1.0  # disjoint maps are anti-correlated before clipping
    entangled = compute_cpd(_entangled_render, None, _latents, K, num_pairs=6, groups=groups, pairs_per_call=4)
    assert entangled["cpd"] == pytest.approx(0.0, abs=1e-5)
    assert np.asarray(entangled["cpd_matrix"]).shape == (K, K) and entangled["cpd_num_samples"] == 12


def test_background_group_is_scored_apart_from_the_parts():
    # Parts 0 and 1 fully entangled, part 2 disjoint; the background overlaps part 0 by 0.6, part 2 by 0.
    matrix = np.array([[1.0, 1.0, 0.0, 0.6], [1.0, 1.0, 0.0, 0.3], [0.0, 0.0, 1.0, 0.0], [0.6, 0.3, 0.0, 1.0]])
    scores = background_scores(matrix, background=True)
    assert scores["cpd_parts"] == pytest.approx(cpd_score(matrix[:3, :3])) == pytest.approx(1 - 2 / 6)
    assert scores["cpd_background_correlation"] == pytest.approx(0.3)
    assert background_scores(matrix, background=False) == {}
    # Through compute_cpd: fully entangled parts and a background that paints nothing. The all-groups
    # score is diluted by the background's zero correlations, 1 − (K − 1)/(K + 1); the parts' is 0.
    groups = PartGroups.each_part(K, background=True)
    result = compute_cpd(_entangled_render, None, _latents, K, num_pairs=4, groups=groups, pairs_per_call=4)
    assert result["cpd_parts"] == pytest.approx(0.0, abs=1e-5) and result["cpd_background_correlation"] == 0.0
    assert result["cpd"] == pytest.approx(1 - (K - 1) / (K + 1), abs=1e-5)


def test_batching_does_not_change_the_result():
    groups = parse_groups("0,1;2;3", K, background=True)
    def render(variables, latent):
        return _disjoint_render(variables, latent) + jnp.tanh(latent.background_embedding)[:, None, None, :] * variables

    one = compute_cpd(render, 0.1, _latents, K, num_pairs=5, groups=groups, pairs_per_call=5)
    padded = compute_cpd(render, 0.1, _latents, K, num_pairs=5, groups=groups, pairs_per_call=2)
    np.testing.assert_allclose(padded["cpd_matrix"], one["cpd_matrix"], atol=1e-6)
    assert one["cpd_groups"] == [[0, 1], [2], [3]] and one["cpd_background"] is True


def test_bad_groups_are_rejected():
    with pytest.raises(ValueError, match="distinct parts"):
        parse_groups("0,1;1", K, False)
    with pytest.raises(ValueError, match="distinct parts"):
        parse_groups("0;7", K, False)
    with pytest.raises(ValueError, match="write them like"):
        parse_groups("0,a", K, False)
