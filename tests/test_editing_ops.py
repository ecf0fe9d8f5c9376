"""Edit operations on the latent (exact checks) and edit recipes (parsing, validation, application)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.editing import ops
from lkgan_jax.editing.recipe import RecipeError, apply_operation, parse_recipe
from lkgan_jax.models.heatmaps import embedding_map, keypoint_heatmaps
from lkgan_jax.models.latent import Latent, latent_from_numpy, latent_to_numpy, noise_from_seeds

B, K, D = 3, 5, 4


def _latent(seed: int, batch: int = B, parts: int = K, dim: int = D) -> Latent:
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    return Latent.create(
        jax.random.uniform(k1, (batch, parts, 2), minval=-0.7, maxval=0.7),
        jax.random.normal(k2, (batch, parts, dim)),
        jax.random.normal(k3, (batch, dim)),
        jax.random.uniform(k4, (batch, parts), minval=0.01, maxval=0.05),
    )


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _unchanged_except(before: Latent, after: Latent, *fields: str):
    for name in ("keypoints", "part_embeddings", "background_embedding", "mask", "tau"):
        if name not in fields:
            _same(getattr(before, name), getattr(after, name))


def test_move_absolute_and_offset_change_only_the_chosen_keypoints():
    latent = _latent(0)
    moved = ops.move(latent, [1, 3], to=np.array([[0.1, -0.2], [0.5, 0.5]]))
    _same(moved.keypoints[:, 1], np.broadcast_to([0.1, -0.2], (B, 2)).astype(np.float32))
    _same(moved.keypoints[:, 3], np.broadcast_to([0.5, 0.5], (B, 2)).astype(np.float32))
    _same(moved.keypoints[:, [0, 2, 4]], latent.keypoints[:, [0, 2, 4]])
    shifted = ops.move(latent, 2, offset=np.array([0.25, -0.5]))
    np.testing.assert_allclose(shifted.keypoints[:, 2], latent.keypoints[:, 2] + jnp.array([0.25, -0.5]), rtol=0, atol=1e-7)
    _same(shifted.keypoints[:, [0, 1, 3, 4]], latent.keypoints[:, [0, 1, 3, 4]])
    _unchanged_except(latent, shifted, "keypoints")
    with pytest.raises(ValueError, match="exactly one"):
        ops.move(latent, 0)


def test_transform_keeps_the_active_centroid_and_scales_rotates_about_it():
    latent = _latent(1)
    latent = latent.replace(mask=latent.mask.at[:, 4].set(False))  # inactive parts do not count
    center = np.asarray(ops.centroid(latent))
    manual = (np.asarray(latent.keypoints)[:, :4] * 1.0).mean(1)
    np.testing.assert_allclose(center, manual, rtol=1e-6)
    out = ops.transform(latent, scale=1.7, rotate_deg=33.0)
    np.testing.assert_allclose(np.asarray(ops.centroid(out)), center, atol=1e-6)
    distance = lambda l: np.linalg.norm(np.asarray(l.keypoints) - np.asarray(ops.centroid(l))[:, None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distance(out), 1.7 * distance(latent), rtol=1e-5)
    _unchanged_except(latent, out, "keypoints")


def test_rotation_is_counter_clockwise_on_the_image_and_translation_adds():
    keypoints = jnp.array([[[0.0, 0.0], [0.5, 0.0]]])  # centroid (0.25, 0); part 1 to the right of it
    latent = Latent.create(keypoints, jnp.zeros((1, 2, 1)), jnp.zeros((1, 1)), 0.01)
    out = ops.transform(latent, rotate_deg=90.0, translate=(0.1, 0.2))
    # y points down: counter-clockwise on screen turns "right of centre" into "above centre" (smaller y).
    np.testing.assert_allclose(np.asarray(out.keypoints[0, 1]), [0.25 + 0.1, -0.25 + 0.2], atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.keypoints[0, 0]), [0.25 + 0.1, 0.25 + 0.2], atol=1e-6)


def test_per_sample_parameters_broadcast_over_the_batch():
    latent = _latent(2)
    scales = jnp.array([1.0, 2.0, 0.5])
    batched = ops.transform(latent, scale=scales, rotate_deg=jnp.array([0.0, 10.0, -20.0]))
    for i, (s, r) in enumerate([(1.0, 0.0), (2.0, 10.0), (0.5, -20.0)]):
        single = ops.transform(jax.tree.map(lambda x, i=i: x[i], latent), scale=s, rotate_deg=r)
        np.testing.assert_allclose(np.asarray(batched.keypoints[i]), np.asarray(single.keypoints), atol=1e-6)


def test_ops_are_vmappable_and_jittable():
    latent, other = _latent(3), _latent(4)
    vmapped = jax.vmap(lambda a, b: ops.interpolate(ops.move(a, 1, offset=jnp.array([0.1, 0.0])), b, 0.3, "all"))(latent, other)
    jitted = jax.jit(lambda a, b: ops.interpolate(ops.move(a, 1, offset=jnp.array([0.1, 0.0])), b, 0.3, "all"))(latent, other)
    for got in (vmapped, jitted):
        want = ops.interpolate(ops.move(latent, 1, offset=jnp.array([0.1, 0.0])), other, 0.3, "all")
        jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-6), got, want)


def test_swap_parts_both_ways_exchanges_exactly_the_chosen_rows():
    a, b = _latent(5), _latent(6)
    parts = [0, 3]
    a2, b2 = ops.swap_parts(a, b, parts), ops.swap_parts(b, a, parts)
    _same(a2.part_embeddings[:, parts], b.part_embeddings[:, parts])
    _same(b2.part_embeddings[:, parts], a.part_embeddings[:, parts])
    _same(a2.part_embeddings[:, [1, 2, 4]], a.part_embeddings[:, [1, 2, 4]])
    _same(b2.part_embeddings[:, [1, 2, 4]], b.part_embeddings[:, [1, 2, 4]])
    _unchanged_except(a, a2, "part_embeddings")
    one = jax.tree.map(lambda x: x[:1], b)  # a single source applies to the whole batch
    _same(ops.swap_parts(a, one, 2).part_embeddings[:, 2], np.broadcast_to(b.part_embeddings[0, 2], (B, D)))


def test_interpolations_hit_both_ends_and_the_midpoint():
    a, b = _latent(7), _latent(8)
    for what, field in (("parts", "part_embeddings"), ("positions", "keypoints"), ("background", "background_embedding")):
        _same(getattr(ops.interpolate(a, b, 0.0, what), field), getattr(a, field))
        np.testing.assert_allclose(getattr(ops.interpolate(a, b, 1.0, what), field), getattr(b, field), atol=1e-6)
        mid = getattr(ops.interpolate(a, b, 0.5, what), field)
        np.testing.assert_allclose(mid, (np.asarray(getattr(a, field)) + np.asarray(getattr(b, field))) / 2, atol=1e-6)
        _unchanged_except(a, ops.interpolate(a, b, 0.5, what), field)
    subset = ops.interpolate_parts(a, b, 1.0, parts=[4])
    np.testing.assert_allclose(subset.part_embeddings[:, 4], b.part_embeddings[:, 4], atol=1e-6)
    _same(subset.part_embeddings[:, :4], a.part_embeddings[:, :4])
    alphas = jnp.array([0.0, 0.5, 1.0])  # one weight per sample
    per_sample = ops.interpolate(a, b, alphas, "all")
    _same(per_sample.keypoints[0], a.keypoints[0])
    np.testing.assert_allclose(per_sample.background_embedding[2], b.background_embedding[2], atol=1e-6)
    full = ops.interpolate(a, b, 1.0, "all")
    for field in ("keypoints", "part_embeddings", "background_embedding"):
        np.testing.assert_allclose(getattr(full, field), getattr(b, field), atol=1e-6)
    with pytest.raises(ValueError, match="what"):
        ops.interpolate(a, b, 0.5, "colours")


def test_swap_background_copies_only_the_background():
    a, b = _latent(9), _latent(10)
    out = ops.swap_background(a, b)
    _same(out.background_embedding, b.background_embedding)
    _unchanged_except(a, out, "background_embedding")


def test_remove_zeroes_exactly_that_parts_heatmap_and_equals_dropping_it():
    latent, k, size = _latent(11), 2, 12
    removed = ops.remove_part(latent, k)
    _unchanged_except(latent, removed, "mask")
    before = np.asarray(keypoint_heatmaps(latent.keypoints, latent.tau, latent.mask, size))
    after = np.asarray(keypoint_heatmaps(removed.keypoints, removed.tau, removed.mask, size))
    assert np.all(after[..., k] == 0.0) and before[..., k].max() > 0.5
    _same(np.delete(after, k, -1), np.delete(before, k, -1))
    keep = [j for j in range(K) if j != k]
    dropped = jax.tree.map(lambda x: x, latent).replace(
        keypoints=latent.keypoints[:, keep], part_embeddings=latent.part_embeddings[:, keep], mask=latent.mask[:, keep], tau=latent.tau[:, keep]
    )
    np.testing.assert_allclose(embedding_map(removed, size), embedding_map(dropped, size), atol=1e-6)


def test_add_part_appends_a_copy_at_the_new_position():
    latent = _latent(12)
    latent = latent.replace(mask=latent.mask.at[:, 0].set(False))
    added = ops.add_part(latent, like=2, at=np.array([0.3, -0.2]))
    assert added.num_parts == K + 1
    assert np.all(np.asarray(added.mask).sum(-1) == np.asarray(latent.mask).sum(-1) + 1)
    _same(added.keypoints[:, K], np.broadcast_to(np.float32([0.3, -0.2]), (B, 2)))
    _same(added.part_embeddings[:, K], latent.part_embeddings[:, 2])
    _same(added.tau[:, K], latent.tau[:, 2])
    _same(added.keypoints[:, :K], latent.keypoints)
    _same(added.mask[:, :K], latent.mask)
    twice = ops.add_part(added, like=K, at=np.array([0.0, 0.0]))  # an added part can be copied again
    assert twice.num_parts == K + 2


def test_scale_part_scales_tau_by_the_square():
    latent = _latent(13)
    out = ops.scale_part(latent, [1, 4], 1.5)
    np.testing.assert_allclose(out.tau[:, [1, 4]], latent.tau[:, [1, 4]] * 2.25, rtol=1e-6)
    _same(out.tau[:, [0, 2, 3]], latent.tau[:, [0, 2, 3]])
    _unchanged_except(latent, out, "tau")


def test_swapping_one_part_changes_the_conditioning_map_only_under_its_heatmap():
    a, b, k, size = _latent(14), _latent(15), 3, 32
    swapped = ops.swap_parts(a, b, k)
    delta = np.asarray(embedding_map(swapped, size) - embedding_map(a, size))
    heat = np.asarray(keypoint_heatmaps(a.keypoints, a.tau, a.mask, size))[..., k]
    change = np.asarray(b.part_embeddings[:, k] - a.part_embeddings[:, k])
    np.testing.assert_allclose(delta, heat[..., None] * change[:, None, None, :], atol=1e-5)
    far = heat < 1e-6
    assert far.mean() > 0.5 and np.abs(delta[far]).max() < 1e-5


def test_bad_part_indices_are_rejected():
    latent = _latent(16)
    with pytest.raises(ValueError, match="part 5 out of range for a latent with 5 parts"):
        ops.move(latent, 5, to=np.zeros(2))
    with pytest.raises(ValueError, match="out of range"):
        ops.remove_part(latent, -1)
    with pytest.raises(ValueError, match="repeated"):
        ops.swap_parts(latent, latent, [1, 1])
    with pytest.raises(ValueError, match="name the parts"):
        ops.interpolate_parts(latent, ops.add_part(latent, 0, np.zeros(2)), 0.5)


def test_seed_noise_depends_on_each_seed_alone_and_latents_round_trip_through_numpy():
    one = noise_from_seeds(np.array([7]), 0, 8)
    many = noise_from_seeds(np.array([3, 7, 9]), 0, 8)
    _same(many[1], one[0])
    assert not np.allclose(noise_from_seeds(np.array([7]), 1, 8), one)  # streams differ
    latent = _latent(17)
    jax.tree.map(_same, latent_from_numpy(latent_to_numpy(latent)), latent)
    with pytest.raises(ValueError, match="lacks"):
        latent_from_numpy({"keypoints": np.zeros((1, 2, 2))})


# ----------------------------------------------------------------------------- recipes

ALL_OPS = [
    {"op": "move", "part": 2, "to": [0.1, -0.2]},
    {"op": "move", "part": [0, 1], "offset": [0.05, 0.0]},
    {"op": "swap_parts", "parts": [0, 1], "from_seed": 7},
    {"op": "remove", "part": 3},
    {"op": "add", "like": 2, "at": [0.3, -0.2]},
    {"op": "move", "part": 5, "offset": [0.0, 0.1]},  # the added part exists from here on
    {"op": "swap_background", "from_seed": 9},
    {"op": "scale_part", "part": 1, "scale": 1.5},
    {"op": "transform", "scale": 1.1, "rotate_deg": 10},
    {"op": "interpolate", "to_seed": 5, "what": "parts", "parts": [0, 1], "steps": 4},
    {"op": "interpolate", "to_seed": 5, "what": "background", "steps": 3},
]


def test_recipe_applies_every_op_in_order():
    operations = parse_recipe(json.dumps(ALL_OPS), num_parts=5)
    assert [op.name for op in operations] == [entry["op"] for entry in ALL_OPS]
    seeds = {seed: _latent(100 + seed, batch=1) for seed in (5, 7, 9)}
    latent = _latent(0, batch=1)
    for op in operations:
        frames = apply_operation(op, latent, seeds.__getitem__)
        expected_frames = op.fields.get("steps", 1) if op.name == "interpolate" else 1
        assert frames.keypoints.shape[0] == expected_frames
        if op.name == "interpolate":  # first frame = before, last = after
            _same(frames.part_embeddings[0], latent.part_embeddings[0])
        latent = jax.tree.map(lambda x: x[-1:], frames)
    assert latent.num_parts == 6 and int(latent.mask.sum()) == 5
    np.testing.assert_allclose(latent.background_embedding, seeds[5].background_embedding, atol=1e-6)
    np.testing.assert_allclose(latent.part_embeddings[:, :2], seeds[5].part_embeddings[:, :2], atol=1e-6)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"op": "move", "part": 1, "to": [0, 0]', "malformed JSON (line 1"),
        ("[]", "non-empty JSON list"),
        ('[{"op": "teleport", "part": 1}]', "op 1 ('teleport'): unknown op"),
        ('[{"part": 1}]', 'op 1: expected an object with an "op" field'),
        ('[{"op": "remove", "part": 0}, {"op": "move", "part": 12, "to": [0, 0]}]', "op 2 ('move'): part 12 out of range"),
        ('[{"op": "move", "part": 1}]', "op 1 ('move'): give exactly one"),
        ('[{"op": "move", "part": 1, "to": [0]}]', "op 1 ('move'): to must be [x, y]"),
        ('[{"op": "remove"}]', "op 1 ('remove'): missing field part"),
        ('[{"op": "remove", "part": 1, "colour": 3}]', "op 1 ('remove'): unknown field colour"),
        ('[{"op": "swap_parts", "parts": [1], "from_seed": -3}]', "from_seed must be an integer seed"),
        ('[{"op": "interpolate", "to_seed": 1, "what": "hair"}]', "what must be one of"),
        ('[{"op": "interpolate", "to_seed": 1, "steps": 1}]', "steps must be an integer in 2.."),
        ('[{"op": "scale_part", "part": 1, "scale": 0}]', "scale must be positive"),
        ('[{"op": "add", "like": 0, "at": [0, 0]}, {"op": "swap_parts", "parts": [5], "from_seed": 1}]', "part 5 out of range"),
        ('[{"op": "add", "like": 0, "at": [0, 0]}, {"op": "interpolate", "to_seed": 1, "what": "positions"}]', 'list the "parts"'),
        ('[{"op": "transform", "rotate_deg": "ten"}]', "rotate_deg must be a finite number"),
    ],
)
def test_bad_recipes_get_one_line_errors_naming_the_op(text, message):
    with pytest.raises(RecipeError) as error:
        parse_recipe(text, num_parts=5, source="OPS.json")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("OPS.json")
