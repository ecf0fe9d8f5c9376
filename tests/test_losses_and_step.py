"""Losses, penalties and EMA against hand-computed values; the step's sharded/unsharded equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from lkgan_jax.train import losses
from lkgan_jax.train.loop import build_trainer
from lkgan_jax.train.step import ema_decay_at


def test_logistic_losses_hand_computed():
    real, fake = jnp.array([0.0, 2.0]), jnp.array([-1.0, 1.0])
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
    expected_d = np.mean([sp(-1.0), sp(1.0)]) + np.mean([sp(-0.0), sp(-2.0)])
    assert float(losses.discriminator_loss(real, fake)) == pytest.approx(expected_d, rel=1e-6)
    assert float(losses.generator_loss(fake)) == pytest.approx(np.mean([sp(1.0), sp(-1.0)]), rel=1e-6)


def test_penalties_hand_computed():
    grads = jnp.array([[[3.0, 4.0]], [[0.0, 1.0]]])  # per-sample norms 5 and 1
    assert float(losses.r1_penalty(grads, gamma=10.0, interval=4)) == pytest.approx(0.5 * 10 * 4 * (25 + 1) / 2)
    assert float(losses.unit_gradient_penalty(grads, weight=10.0)) == pytest.approx(10 * ((5 - 1) ** 2 + 0) / 2, rel=1e-5)


def test_keypoint_recovery_loss_hand_computed_and_targets_fixed():
    predicted = jnp.array([[[0.1, -0.2], [0.5, 0.5]]])
    target = jnp.array([[[0.0, 0.0], [0.5, 1.0]]])
    assert float(losses.keypoint_recovery_loss(predicted, target)) == pytest.approx((0.1 + 0.2 + 0.0 + 0.5) / 4)
    grad = jax.grad(lambda t: losses.keypoint_recovery_loss(predicted, t))(target)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_keypoint_recovery_step_trains_the_head_and_logs_both_terms():
    config = tiny.get_config()
    config.model.keypoint_recovery_weight = 1.0
    config.train.keypoint_jitter = -0.1
    with pytest.raises(ValueError, match="train.keypoint_jitter"):
        build_trainer(config, devices=jax.devices()[:1])
    config.train.keypoint_jitter = 0.05
    config.train.recovery_jitter, config.train.recovery_jitter_batch = 0.1, 2
    trainer = build_trainer(config, devices=jax.devices()[:1])
    r = config.data.resolution
    images = jax.random.uniform(jax.random.key(3), (config.train.batch_size, r, r, 3), minval=-1, maxval=1)
    with jax.set_mesh(trainer.mesh):
        before = jax.device_get(trainer.initial_state())
        state, metrics = trainer.train_step(trainer.initial_state(), {"image": jax.device_put(images, trainer.batch_sharding)}, False)
        after, metrics = jax.device_get((state, metrics))
    assert metrics["d_keypoint_recovery"] > 0 and metrics["g_keypoint_recovery"] > 0
    assert metrics["d_keypoint_recovery_jittered"] > 0 and metrics["g_keypoint_recovery_jittered"] > 0
    assert np.all(np.isfinite([metrics["d_loss"], metrics["g_loss"]]))
    head_change = after.d_params["keypoint_head"]["kernel"] - before.d_params["keypoint_head"]["kernel"]
    assert np.abs(head_change).max() > 0


def test_recovery_jitter_needs_recovery_and_a_valid_sigma():
    config = tiny.get_config()
    config.model.keypoint_recovery_weight = 0.0
    config.train.recovery_jitter, config.train.recovery_jitter_batch = 0.1, 2
    with pytest.raises(ValueError, match="needs keypoint recovery"):
        build_trainer(config, devices=jax.devices()[:1])
    config.model.keypoint_recovery_weight, config.train.recovery_jitter = 1.0, -0.1
    with pytest.raises(ValueError, match="train.recovery_jitter"):
        build_trainer(config, devices=jax.devices()[:1])


def test_ema_decay_warmup():
    assert float(ema_decay_at(jnp.int32(0), 0.999, True)) == pytest.approx(0.1)
    assert float(ema_decay_at(jnp.int32(90), 0.999, True)) == pytest.approx(0.91)
    assert float(ema_decay_at(jnp.int32(10**6), 0.999, True)) == pytest.approx(0.999)
    assert float(ema_decay_at(jnp.int32(0), 0.999, False)) == pytest.approx(0.999)


def _equivalence_config(penalty):
    config = tiny.get_config()
    config.train.penalty = penalty
    # Biases whose every path ends in a BatchNorm have a zero gradient up to rounding; with Adam's
    # tiny default ε that rounding noise becomes ±lr updates that differ between reduction orders.
    config.train.adam_eps = 1e-4
    return config


@pytest.mark.parametrize("penalty", ["r1", "gp"])
def test_sharded_step_matches_single_device(penalty):
    assert len(jax.devices()) == 8
    config = _equivalence_config(penalty)
    sharded = build_trainer(config)
    single = build_trainer(_equivalence_config(penalty), devices=jax.devices()[:1])
    r = config.data.resolution
    images = jax.random.uniform(jax.random.key(3), (config.train.batch_size, r, r, 3), minval=-1, maxval=1)
    results = []
    for trainer in (sharded, single):
        with jax.set_mesh(trainer.mesh):
            state = trainer.initial_state()
            batch = {"image": jax.device_put(images, trainer.batch_sharding)}
            state, m1 = trainer.train_step(state, batch, True)
            state, m2 = trainer.train_step(state, batch, False)
            results.append(jax.device_get((state, m1, m2)))
    (s_a, a1, a2), (s_b, b1, b2) = results
    assert "grad_penalty" in a1 and "grad_penalty" not in a2
    for key in a1:
        np.testing.assert_allclose(a1[key], b1[key], rtol=1e-4, atol=1e-5)
    for key in a2:
        np.testing.assert_allclose(a2[key], b2[key], rtol=1e-4, atol=1e-5)
    for name in ("g_params", "d_params", "g_stats", "ema_params"):
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(getattr(s_a, name)), jax.tree.leaves(getattr(s_b, name))):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5, err_msg=f"{name}{jax.tree_util.keystr(path)}")
    assert int(s_a.step) == 2 and int(s_a.nonfinite_step) == -1


def test_fsdp_mesh_shards_large_params():
    config = tiny.get_config()
    config.mesh.data, config.mesh.fsdp, config.mesh.fsdp_min_bytes = 4, 2, 1024
    trainer = build_trainer(config)
    specs = [s.spec for s in jax.tree.leaves(trainer.state_shardings.g_params)]
    assert any("fsdp" in tuple(spec) for spec in specs)
    with jax.set_mesh(trainer.mesh):
        state = trainer.initial_state()
        r = config.data.resolution
        batch = {"image": jax.device_put(jnp.zeros((config.train.batch_size, r, r, 3)), trainer.batch_sharding)}
        state, metrics = trainer.train_step(state, batch, False)
    assert np.isfinite(float(metrics["g_loss"]))


def test_bad_mesh_and_batch_are_one_line_errors():
    config = tiny.get_config()
    config.mesh.data, config.mesh.fsdp = 3, 1
    with pytest.raises(ValueError, match="does not fit 8 devices"):
        build_trainer(config)
    config = tiny.get_config()
    config.train.batch_size = 12
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        build_trainer(config)
    config = tiny.get_config()
    config.data.resolution = 64
    with pytest.raises(ValueError, match="a generator of 32-px images only"):
        build_trainer(config)
