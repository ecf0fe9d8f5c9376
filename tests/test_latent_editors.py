"""The learned editors and their losses against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.latent_editing import losses
from lkgan_jax.latent_editing.editors import DirectionMatrix, LatentMapper, flatten_latent, unflatten_offset
from lkgan_jax.models.latent import Latent

A, K, D, B = 3, 4, 5, 6


def _latent(key=0):
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return Latent.create(jax.random.uniform(k1, (B, K, 2), minval=-0.5, maxval=0.5),
                         jax.random.normal(k2, (B, K, D)), jax.random.normal(k3, (B, D)), 0.01)


def _assert_latents_equal(a, b, atol=0.0):
    for name in ("keypoints", "part_embeddings", "background_embedding", "mask", "tau"):
        np.testing.assert_allclose(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), atol=atol, err_msg=name)


def test_flatten_and_offset_round_trip():
    latent = _latent()
    flat = flatten_latent(latent)
    assert flat.shape == (B, 2 * K + K * D + D)
    moved = unflatten_offset(latent, flat)
    np.testing.assert_allclose(flatten_latent(moved), 2 * flat, rtol=1e-6)


def test_mapper_is_the_identity_at_initialisation_for_any_delta():
    latent = _latent()
    mapper = LatentMapper(A, K, D, depth=2)
    delta = jax.random.normal(jax.random.key(1), (B, A))
    variables = mapper.init(jax.random.key(2), latent, delta)
    assert set(variables) == {"params", "standardisation"}
    _assert_latents_equal(mapper.apply(variables, latent, delta), latent)
    _assert_latents_equal(mapper.apply(variables, latent, jnp.zeros((B, A))), latent)
    width = 2 * K + K * D + D
    assert variables["params"]["hidden_0"]["kernel"].shape == (width + A, width)
    # Trained (non-zero) output layer: a delta now changes the latent, and vmap/jit agree with a batch.
    params = jax.tree.map(lambda x: x + 0.01, variables["params"])
    variables = {**variables, "params": params}
    edited = jax.jit(mapper.apply)(variables, latent, delta)
    assert not np.allclose(flatten_latent(edited), flatten_latent(latent))
    one = jax.vmap(lambda l, d: mapper.apply(variables, jax.tree.map(lambda x: x[None], l), d[None]))(latent, delta)
    np.testing.assert_allclose(np.asarray(one.keypoints[:, 0]), np.asarray(edited.keypoints), atol=1e-5)


def test_direction_matrix_is_linear_in_delta_and_respects_disabled_blocks():
    latent = _latent()
    editor = DirectionMatrix(A, K, D, edit_positions=False)
    delta = jnp.zeros((B, A)).at[:, 1].set(2.0)
    variables = editor.init(jax.random.key(0), latent, delta)
    edited = editor.apply(variables, latent, delta)
    np.testing.assert_array_equal(np.asarray(edited.keypoints), np.asarray(latent.keypoints))
    t = variables["params"]
    np.testing.assert_allclose(edited.part_embeddings, latent.part_embeddings + 2.0 * t["embeddings"][1], rtol=1e-6)
    np.testing.assert_allclose(edited.background_embedding, latent.background_embedding + 2.0 * t["background"][1], rtol=1e-6)
    norms = editor.apply(variables, method=DirectionMatrix.block_norms)
    assert norms.shape == (A, 2 * K + 1)
    np.testing.assert_allclose(norms[:, :K], 0.0, atol=1e-5)
    np.testing.assert_allclose(norms[2, K + 1], np.linalg.norm(t["embeddings"][2, 1]), rtol=1e-5)
    with pytest.raises(ValueError, match="latents of 4 parts"):
        editor.apply(variables, Latent.create(latent.keypoints[:, :3], latent.part_embeddings[:, :3], latent.background_embedding, 0.01), delta)


def test_group_lasso_gradient_is_the_unit_direction_of_each_block():
    editor = DirectionMatrix(A, K, D)
    variables = editor.init(jax.random.key(0), _latent(), jnp.zeros((B, A)))
    grads = jax.grad(lambda p: losses.group_lasso(editor.apply({"params": p}, method=DirectionMatrix.block_norms)))(variables["params"])
    t = variables["params"]
    expected = t["embeddings"] / np.linalg.norm(t["embeddings"], axis=-1, keepdims=True)
    np.testing.assert_allclose(grads["embeddings"], expected, rtol=1e-4)
    np.testing.assert_allclose(grads["background"], t["background"] / np.linalg.norm(t["background"], axis=-1, keepdims=True), rtol=1e-4)


def test_losses_are_zero_where_they_must_be_and_hand_computed_elsewhere():
    original = jnp.array([[0.0, 1.0], [2.0, -1.0]])
    delta = jnp.array([[0.5, 0.0], [0.0, 0.0]])
    assert float(losses.attribute_loss(original + delta, original, delta)) == 0.0
    assert float(losses.attribute_loss(original, original, delta)) == pytest.approx(0.25 / 4)
    flat = jnp.ones((2, 3))
    assert float(losses.latent_distance(flat, flat, jnp.ones(3))) == 0.0
    assert float(losses.latent_distance(flat * 3, flat, jnp.full(3, 2.0))) == pytest.approx(1.0)
    keypoints = jnp.zeros((2, 4, 2))
    assert float(losses.keypoint_preservation_loss(keypoints, keypoints, jnp.ones(2))) == 0.0
    moved = keypoints.at[0].add(0.1)
    assert float(losses.keypoint_preservation_loss(moved, keypoints, jnp.ones(2))) == pytest.approx(0.05)
    assert float(losses.keypoint_preservation_loss(moved, keypoints, jnp.array([0.0, 1.0]))) == 0.0
    assert float(losses.balanced_weight({"w": jnp.array([3.0, 4.0])}, {"w": jnp.array([0.5, 0.0])})) == pytest.approx(10.0)


def test_editing_metrics_of_an_editor_that_does_nothing(tiny_run):
    from lkgan_jax.latent_editing.evaluate import EditingProtocol, Reading, editing_metrics, round_trip
    from lkgan_jax.pretrained import load_generator

    generator = load_generator(tiny_run[0])
    names, n, m = ("skin_tone", "mouth_open"), 16, 1.5
    protocol = EditingProtocol(num_samples=n, seed=5, batch_size=8, region_radius=0.25, num_fit=8)
    rng = np.random.default_rng(5)
    requested = [rng.uniform(-m, m, n) for _ in names]

    def read(images):  # "attributes": each colour channel's mean; keypoints and landmarks: the image mean
        b = images.shape[0]
        centre = np.zeros((b, 10, 2)) + float(jnp.mean(images))
        return Reading(np.asarray(jnp.mean(images, axis=(1, 2))), centre[:, :3], centre, np.ones((b, 4)))

    still, moments, images = editing_metrics(generator, lambda lat, d: lat, names, np.ones(2), read, (0, 1), m, protocol)
    for i, name in enumerate(names):
        assert still[f"accuracy_mae/{name}"] == pytest.approx(np.mean(np.abs(requested[i])), rel=1e-5)
        assert still[f"slope/{name}"] == 0.0
    assert still["leakage_mean"] == 0.0 and still["keypoint_drift_px"] == 0.0
    assert still["outside_share/mouth_open"] == 0.0 and "outside_share/skin_tone" not in still  # a local attribute only
    assert moments.num == 2 * n and sum(len(x) for x in images) == 2 * n and images[0].dtype == np.uint8
    round = round_trip(generator, lambda lat, d: lat, 2, jnp.ones(2 * 4 + 4 * 8 + 8), m, protocol)
    assert round == {"round_trip_latent": 0.0, "round_trip_image_l1": 0.0}


def test_outside_share_of_hand_built_changes():
    from lkgan_jax.latent_editing.evaluate import outside_share

    before = jnp.zeros((3, 16, 16, 3))
    centre = np.zeros((3, 1, 2))  # the image centre
    inside = before.at[0, 7:9, 7:9].set(1.0)  # a 2 × 2 change at the centre, within radius 0.25 (2 px)
    inside = inside.at[1, 0, 0].set(1.0)  # a corner pixel: wholly outside
    inside = inside.at[2, 7, 7].set(1.0).at[2, 0, 0].set(3.0)  # one part in, three parts out
    share = outside_share(before, inside, centre, 0.25)
    assert share == pytest.approx([0.0, 1.0, 0.75])


def test_linear_and_random_directions():
    from lkgan_jax.latent_editing.evaluate import linear_editor, random_directions

    k, d = 2, 3
    latent = Latent.create(jnp.zeros((2, k, 2)), jnp.zeros((2, k, d)), jnp.zeros((2, d)), 1.0)
    width = 2 * k + k * d + d
    directions = np.zeros((2, width))
    directions[0, 0] = 0.5  # attribute 0 moves x of part 0; attribute 1 moves the background's last entry
    directions[1, -1] = 2.0
    edited = linear_editor(directions)(latent, jnp.asarray([[1.0, 0.0], [2.0, -1.0]]))
    assert np.asarray(edited.keypoints)[:, 0, 0].tolist() == [0.5, 1.0]
    assert np.asarray(edited.background_embedding)[:, -1].tolist() == [0.0, -2.0]
    std = np.linspace(0.5, 2.0, width)
    random = random_directions(directions, std, seed=0)
    assert np.linalg.norm(random / std, axis=1) == pytest.approx(np.linalg.norm(directions / std, axis=1))
    cosine = np.dot(random[0], directions[0]) / (np.linalg.norm(random[0]) * np.linalg.norm(directions[0]))
    assert abs(cosine) < 0.9  # another direction of the same norm
