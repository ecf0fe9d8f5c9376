"""Losses, penalties and EMA against hand-computed values; the step's sharded/unsharded equivalence."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from lkgan_jax.train import health, losses
from lkgan_jax.train.loop import build_trainer, is_penalty_step, step_variant, step_variants
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


def test_recovery_jitter_at_weight_zero_is_the_step_without_it():
    """The jittered term enters L_D and L_G only through its weight: at 0 the step equals the unjittered one."""
    config = tiny.get_config()
    config.model.keypoint_recovery_weight = 1.0
    r = config.data.resolution
    images = jax.random.uniform(jax.random.key(3), (config.train.batch_size, r, r, 3), minval=-1, maxval=1)

    def one_step(jitter, weight):
        config.train.recovery_jitter, config.train.recovery_jitter_batch = jitter, 2
        config.train.recovery_jitter_weight = weight
        trainer = build_trainer(config, devices=jax.devices()[:1])
        with jax.set_mesh(trainer.mesh):
            state, _ = trainer.train_step(trainer.initial_state(), {"image": jax.device_put(images, trainer.batch_sharding)}, False)
            return jax.device_get((state.g_params, state.d_params))

    plain, weightless, weighted = one_step(0.0, 1.0), one_step(0.1, 0.0), one_step(0.1, 1.0)
    for a, b, c in zip(jax.tree.leaves(plain), jax.tree.leaves(weightless), jax.tree.leaves(weighted)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert max(np.abs(a - c).max() for a, c in zip(jax.tree.leaves(plain), jax.tree.leaves(weighted))) > 1e-6
    config.train.recovery_jitter_weight = -1.0
    with pytest.raises(ValueError, match="train.recovery_jitter_weight"):
        build_trainer(config, devices=jax.devices()[:1])


def test_recovery_jitter_and_flips_are_the_cpu_defaults_only():
    """configs/default.py trains with 4 jittered fakes at weight 0.25 and flipped real images; the tiny test
    config, the GPU configs (whose speed figures exclude the jitter) and the paper variant leave the jitter off."""
    from configs import default, paper_128

    c = default.get_config()
    assert (c.train.recovery_jitter, c.train.recovery_jitter_batch, c.train.recovery_jitter_weight, c.data.random_flip) == (0.1, 4, 0.25, True)
    for config in (tiny.get_config(), paper_128.get_config(), default.get_config("paper")):
        assert config.train.recovery_jitter_batch == 0
    assert not default.get_config("paper").data.random_flip


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
    # Some gradients are zero up to rounding (biases whose every path ends in a BatchNorm, and D biases
    # whose gradient cancels across the batch); with a tiny ε Adam turns that rounding noise, which
    # differs between reduction orders, into updates of up to ±lr. This ε keeps such updates linear.
    config.train.adam_eps = 1e-2
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


def test_term_gradients_hand_computed_and_a_zero_weight_gives_a_zero_norm():
    params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}

    def terms(p):  # a = 2·Σw², b = 0·(b·w₀), c = b²
        return {"a": 2.0 * jnp.sum(p["w"] ** 2), "b": 0.0 * p["b"] * p["w"][0], "c": p["b"] ** 2}, {"seen": p["b"]}

    values, aux, grads, norms = health.term_gradients(terms, params, "d", with_norms=True)
    assert float(aux["seen"]) == 3.0 and float(values["a"]) == 10.0
    np.testing.assert_allclose(grads["w"], [4.0, 8.0])  # ∂(a + b + c)/∂w = 4w
    assert float(grads["b"]) == pytest.approx(6.0)
    assert float(norms["grad_norm/d/a"]) == pytest.approx(np.hypot(4.0, 8.0), rel=1e-6)
    assert float(norms["grad_norm/d/b"]) == 0.0
    assert float(norms["grad_norm/d/c"]) == pytest.approx(6.0)
    _, _, plain, skipped = health.term_gradients(terms, params, "d", with_norms=False)
    assert skipped == {} and jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), plain, grads))


def test_the_penalty_and_the_term_norms_run_on_logged_steps():
    """Penalty steps end each reg_every-block, so log_every (a multiple of it, or the common multiple) shows them."""
    logged = {i for i in range(2000) if (i + 1) % 50 == 0}
    assert {i for i in logged if is_penalty_step(i, 16)} == {399, 799, 1199, 1599, 1999}
    assert [i for i in range(9) if is_penalty_step(i, 4)] == [3, 7]
    config = tiny.get_config()
    config.train.steps, config.train.log_every, config.train.reg_every = 9, 4, 2
    assert set(step_variants(config.train)) == {(False, False), (True, False)}  # term norms off: two executables
    config.train.term_grad_norms = True
    assert set(step_variants(config.train)) == {(False, False), (True, False), (True, True)}  # three, not four
    variants = [step_variant(i, config.train) for i in range(9)]
    assert [i for i, (reg, _) in enumerate(variants) if reg] == [1, 3, 5, 7]
    # Logged: steps 4, 8 and the last (index 8, no penalty): the term norms on the logged penalty steps only.
    assert [i for i, (_, terms) in enumerate(variants) if terms] == [3, 7]
    assert all(variant in step_variants(config.train) for variant in variants)


def test_a_logged_penalty_step_reports_the_penalty_and_every_term_norm():
    config = tiny.get_config()
    config.model.keypoint_recovery_weight = 1.0
    config.train.log_every = 1
    trainer = build_trainer(config)
    with jax.set_mesh(trainer.mesh):
        state = trainer.initial_state()
        r = config.data.resolution
        images = jax.random.uniform(jax.random.key(3), (config.train.batch_size, r, r, 3), minval=-1, maxval=1)
        _, metrics = trainer.train_step(state, {"image": jax.device_put(images, trainer.batch_sharding)}, True, True)
    metrics = jax.device_get(metrics)
    assert metrics["grad_penalty"] > 0
    for key in ("d/adversarial", "d/penalty", "d/recovery", "g/adversarial", "g/recovery"):
        assert metrics[f"grad_norm/{key}"] > 0, key
    # The terms' gradients add up to the total: the total's norm is at most the sum of theirs.
    d_terms = sum(metrics[f"grad_norm/d/{k}"] for k in ("adversarial", "penalty", "recovery"))
    assert metrics["grad_norm/d"] <= d_terms * (1 + 1e-5)


def test_default_generator_starts_unsaturated():
    """The default's RGB conv starts small (model.g_rgb_init_scale): few output pixels in tanh's flat tails."""
    from configs import default
    from lkgan_jax.models.latent import sample_noise
    from lkgan_jax.train.state import create_state, make_models

    config = default.get_config()
    models = make_models(config)
    state = create_state(models, jax.random.key(0), config.model.z_dim, config.data.resolution)
    images, _ = jax.jit(functools.partial(models.generator.apply, train=True, mutable=["batch_stats"]))(
        {"params": state.g_params, "batch_stats": state.g_stats}, *sample_noise(jax.random.key(1), 16, config.model.z_dim))
    assert float(jnp.mean(jnp.abs(images) > 0.95)) < 0.05
