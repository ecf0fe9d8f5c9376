"""Where the train step's time goes: its components jitted and timed alone; prints one JSON object.

  python benchmarks/step_profile.py --config=configs/default.py [--config.x=y ...] [--iters N] [--repeats R]

Every component runs on the config's real shapes (batch size, resolution, widths) from the trainer's
initial state, compiled as in training (``compile_lowered``, not fast): G's sample in train mode (BatchNorm
statistics updated) and the gradient of its mean image w.r.t. G's parameters, D's forward and the gradient
of its mean logit (plus mean keypoints, with keypoint recovery on), the gradient penalty's double backward
(R1 or GP, as ``train.penalty``), both Adam updates on random gradients and the EMA. Each gets ``ms`` (median
over repeats of the mean over iters, after a warm-up call), ``gflop`` (XLA's cost analysis), ``gflop_per_s``,
``fraction_of_peak`` (of a large jitted float32 matmul's GFLOP/s on this machine) and ``share_of_step`` (of the
lazy-schedule step, timed by train_step.py's ``measure_train_step``). ``g_forward_breakdown`` splits G's
forward by op class: each SPADE res-block alone at its resolution and, inside it, the SPADEs' hidden convs
(one conv over the conditioning map per block), their γ/β convs (one conv per SPADE), the normalisations (with
the modulation) and the residual-branch convs; besides, the mapping MLPs, the conditioning maps and the RGB
head, all on the trained parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from lkgan_jax.config_loading import load_config  # noqa: E402
from lkgan_jax.models.generator import SpadeResBlock, statistics as g_statistics  # noqa: E402
from lkgan_jax.models.heatmaps import embedding_map  # noqa: E402
from lkgan_jax.models.layers import fused_conv  # noqa: E402
from lkgan_jax.models.latent import sample_noise  # noqa: E402
from lkgan_jax.train import losses  # noqa: E402
from lkgan_jax.train.loop import build_trainer  # noqa: E402
from machine_peak import matmul_gflop_per_s, timed  # noqa: E402
from train_step import measure_train_step  # noqa: E402

NOTE = ("Components are separate executables timed alone: they overlap (the step runs G's forward twice, D on reals "
        "and fakes, ...), XLA fuses across them inside the step, and small ones are dominated by dispatch, so "
        "neither they nor their shares sum to the step. step_estimate_ms = g_forward_train + g_forward_backward + "
        "3 d_forward_backward + penalty_double_backward / reg_every + both optimizer updates + ema, a rough model. "
        "ms are timed; gflop are XLA's cost analysis (elementwise ops count). In g_forward_breakdown, 'ms' is each op "
        "class timed alone (summed over blocks), 'ms_scaled' the same rescaled so a block's pieces sum to the "
        "block's own timed ms (timed, then apportioned), 'gflop_share' is FLOP-derived (of g_forward_train's gflop); "
        "'other' is g_forward_train minus the rest (upsampling, activations, layout; may be negative). The "
        "step is compiled as training compiles it (train.fast_compile), the components never fast.")


def convs(x: jax.Array, params: list[dict], dtype) -> jax.Array:
    """``layers.fused_conv`` of x from conv parameter dicts ({"kernel"[, "bias"]}; no bias: zeros)."""
    pairs = [(q["kernel"], q.get("bias", jnp.zeros(q["kernel"].shape[-1], q["kernel"].dtype))) for q in params]
    return fused_conv(x, pairs, dtype)


def block_profile(gen, p, s, x, cond, features, iters, repeats) -> tuple[dict, dict]:
    """One SpadeResBlock (params ``p``, statistics ``s``) on ``x``, ``cond`` → (its timing, timing per op class)."""
    c_in, middle, dt = x.shape[-1], min(x.shape[-1], features), gen.dtype
    widths = {"spade_0": c_in, "spade_1": middle} | ({} if c_in == features else {"spade_shortcut": c_in})
    block = SpadeResBlock(features, gen.spade_hidden, gen.slope, gen.bn_momentum, gen.bn_epsilon, dt,
                          gen.residual_init_scale, gen.norm_groups)
    variables = {"params": p} | ({"batch_stats": s} if s else {})
    kw = {"iters": iters, "repeats": repeats}
    whole = timed(lambda v, x, c: block.apply(v, x, c, True, mutable=["batch_stats"]), variables, x, cond, **kw)

    if gen.norm_groups:
        norm = nn.GroupNorm(gen.norm_groups, epsilon=gen.bn_epsilon, use_bias=False, use_scale=False, dtype=dt)
    else:
        norm = nn.BatchNorm(use_running_average=False, momentum=gen.bn_momentum, epsilon=gen.bn_epsilon,
                            use_bias=False, use_scale=False, dtype=dt)
    key = jax.random.key(2)
    inputs = {n: jax.random.normal(jax.random.fold_in(key, c), x.shape[:-1] + (c,), dt) for n, c in widths.items()}
    hidden = jnp.zeros(cond.shape[:-1] + (gen.spade_hidden * len(widths),), dt)

    def shared(p, cond):  # the block's SPADE hidden convs, as one conv over the conditioning map
        return nn.leaky_relu(convs(cond, [p[n]["shared"] for n in widths], dt), gen.slope)

    def gamma_beta(p, h):  # each SPADE's γ and β convs, as one conv per SPADE
        return [convs(h[..., i * gen.spade_hidden:(i + 1) * gen.spade_hidden], [p[n]["gamma"], p[n]["beta"]], dt)
                for i, n in enumerate(widths)]

    def normalise(s, xs):  # the normalisation and the modulation (1 + γ) · x̂ + β, γ = β = x here
        return [norm.apply({"batch_stats": s[n]["norm"]} if s else {}, xs[n], mutable=True)[0] * (1.0 + xs[n]) + xs[n]
                for n in widths]

    def residual(p, x):
        out = [convs(convs(x, [p["conv_0"]], dt), [p["conv_1"]], dt)]
        return out + ([convs(x, [p["conv_shortcut"]], dt)] if "spade_shortcut" in widths else [])

    pieces = {
        "spade_shared": timed(shared, p, cond, **kw),
        "spade_gamma_beta": timed(gamma_beta, p, hidden, **kw),
        "normalisation": timed(normalise, s, inputs, **kw),
        "residual_convs": timed(residual, p, x, **kw),
    }
    return whole, pieces


def g_forward_breakdown(gen, params, stats, key, batch, g_forward_ms, g_forward_gflop, kw) -> dict:
    """G's forward by op class: the res-blocks' pieces, the mapping MLPs, the conditioning maps, the RGB head."""
    noise = sample_noise(key, batch, gen.z_dim)
    sides = [4 * 2**i for i in range(len(gen.channels))]
    footprint = "cone" if gen.part_footprint == "learned" else "gaussian"

    def sample_latent(p, noise):
        return gen.apply({"params": p}, *noise, method=type(gen).sample_latent)

    def maps(latent):  # the conditioning map of every block, as SpadeRenderer computes them
        return [embedding_map(latent, side, gen.tau_floor_pixels, gen.min_keypoint_size, footprint, gen.part_mask_gating)
                .astype(gen.dtype) for side in sides]

    latent = jax.jit(sample_latent)(params, noise)
    conds = jax.jit(maps)(latent)
    classes = {"mapping": timed(sample_latent, params, noise, **kw), "embedding_maps": timed(maps, latent, **kw)}
    for c in classes.values():
        c["ms_scaled"] = c["ms"]
    blocks, renderer = [], params["renderer"]
    for i, (side, features, cond) in enumerate(zip(sides, gen.channels, conds)):
        c_in = gen.const_channels if i == 0 else gen.channels[i - 1]
        x = jax.random.normal(jax.random.fold_in(key, side), (batch, side, side, c_in), gen.dtype)
        name = f"block_{side}"
        whole, pieces = block_profile(gen, renderer[name], stats.get("renderer", {}).get(name, {}), x, cond, features, **kw)
        total = sum(piece["ms"] for piece in pieces.values())
        blocks.append({"side": side, **whole, "pieces_ms_sum": total})
        for cls, piece in pieces.items():
            entry = classes.setdefault(cls, {"ms": 0.0, "gflop": 0.0, "ms_scaled": 0.0})
            entry["ms"] += piece["ms"]
            entry["gflop"] += piece["gflop"]
            entry["ms_scaled"] += piece["ms"] * whole["ms"] / total
    head_params = (renderer["head_0"], renderer["head_rgb"])

    def head(p, x):
        x = convs(nn.leaky_relu(x, gen.slope), [p[0]], gen.dtype)
        return jnp.tanh(convs(nn.leaky_relu(x, gen.slope), [p[1]], gen.dtype).astype(jnp.float32))

    side = sides[-1]
    classes["head"] = timed(head, head_params, jnp.zeros((batch, side, side, gen.channels[-1]), gen.dtype), **kw)
    classes["head"]["ms_scaled"] = classes["head"]["ms"]
    classes["other"] = {"ms": g_forward_ms - sum(c["ms_scaled"] for c in classes.values()), "gflop": g_forward_gflop - sum(
        c["gflop"] for c in classes.values())}
    classes["other"]["ms_scaled"] = classes["other"]["ms"]
    for c in classes.values():
        c["gflop_share"] = c["gflop"] / g_forward_gflop if g_forward_gflop else None
    return {"classes": classes, "blocks": blocks}


def profile(config, iters: int, repeats: int, matmul_size: int) -> dict:
    kw = {"iters": iters, "repeats": repeats}
    peak = matmul_gflop_per_s(matmul_size, repeats)
    step = measure_train_step(config, iters)
    step_ms = 1e3 / step["steps_per_s"]

    trainer = build_trainer(config)
    t, models = config.train, trainer.models
    gen, disc = models.generator, models.discriminator
    disc_f32 = disc.clone(dtype=jnp.float32)
    recovery = config.model.get("keypoint_recovery_weight", 0.0) > 0
    batch, res = t.batch_size, config.data.resolution
    with jax.set_mesh(trainer.mesh):
        state = trainer.initial_state()
        key = jax.random.key(1)
        real = jax.random.uniform(key, (batch, res, res, 3), minval=-1, maxval=1)

        def g_forward(params, stats, key):
            (images, _), updates = gen.apply({"params": params, "batch_stats": stats}, *sample_noise(key, batch, gen.z_dim),
                                             train=True, method=type(gen).sample, mutable=["batch_stats"])
            return images, g_statistics(updates)

        def d_forward(params, images):
            out = disc.apply({"params": params}, images, return_keypoints=recovery)
            return sum(jnp.mean(o) for o in out) if recovery else jnp.mean(out)

        def penalty(params, real):
            logits, pullback = jax.vjp(lambda x: disc_f32.apply({"params": params}, x), real)
            (grads,) = pullback(jnp.ones_like(logits))
            if t.penalty == "r1":
                return losses.r1_penalty(grads, t.r1_gamma, t.reg_every)
            return losses.unit_gradient_penalty(grads, t.gp_weight)

        @jax.jit
        def random_like(tree):  # N(0, 1) gradients of the parameters' shapes
            leaves, treedef = jax.tree.flatten(tree)
            return treedef.unflatten([jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
                                      for i, x in enumerate(leaves)])

        def adam(tx):
            def update(params, opt, grads):
                updates, opt = tx.update(grads, opt, params)
                return optax.apply_updates(params, updates), opt
            return update

        components = {
            "g_forward_train": timed(g_forward, state.g_params, state.g_stats, key, **kw),
            "g_forward_backward": timed(jax.grad(lambda p, s, k: jnp.mean(g_forward(p, s, k)[0])), state.g_params, state.g_stats,
                                        key, **kw),
            "d_forward": timed(d_forward, state.d_params, real, **kw),
            "d_forward_backward": timed(jax.grad(d_forward), state.d_params, real, **kw),
            "penalty_double_backward": timed(jax.grad(penalty), state.d_params, real, **kw),
            "optimizer_update_g": timed(adam(models.g_tx), state.g_params, state.g_opt, random_like(state.g_params), **kw),
            "optimizer_update_d": timed(adam(models.d_tx), state.d_params, state.d_opt, random_like(state.d_params), **kw),
            "ema": timed(lambda new, old: optax.incremental_update(new, old, step_size=1.0 - t.ema_decay),
                         state.g_params, state.ema_params, **kw),
        }
        c = components
        g_fwd = c["g_forward_train"]
        breakdown = g_forward_breakdown(gen, state.g_params, state.g_stats, key, batch, g_fwd["ms"], g_fwd["gflop"], kw)

    estimate = (g_fwd["ms"] + c["g_forward_backward"]["ms"] + 3 * c["d_forward_backward"]["ms"]
                + c["penalty_double_backward"]["ms"] / t.reg_every + c["optimizer_update_g"]["ms"] + c["optimizer_update_d"]["ms"]
                + c["ema"]["ms"])
    for entry in [*c.values(), *breakdown["classes"].values(), *breakdown["blocks"]]:
        entry["share_of_step"] = entry["ms"] / step_ms
        entry["gflop_per_s"] = entry["gflop"] / entry["ms"] * 1e3 if entry["ms"] > 0 else None
        entry["fraction_of_peak"] = entry["gflop_per_s"] / peak["gflop_per_s"] if entry["gflop_per_s"] else None
    devices = jax.devices()
    return {
        "device_kind": devices[0].device_kind, "platform": devices[0].platform, "device_count": len(devices),
        "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS"),
        "resolution": res, "batch_size": batch, "dtype": config.model.dtype, "penalty": t.penalty,
        "keypoint_recovery": recovery, "iters": iters, "repeats": repeats,
        "peak_matmul_gflop_per_s": peak["gflop_per_s"], "peak_matmul": peak,
        "step": {"ms": step_ms, "steps_per_s": step["steps_per_s"], "reg_every": t.reg_every, "steps_timed": step["steps_timed"],
                 "fast_compile": t.fast_compile,
                 "gflop": step["flops_per_step"] / 1e9, "gflop_per_s": step["achieved_flops_per_s"] / 1e9,
                 "fraction_of_peak": step["achieved_flops_per_s"] / 1e9 / peak["gflop_per_s"]},
        "components": components, "step_estimate_ms": estimate, "g_forward_breakdown": breakdown, "note": NOTE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--iters", type=int, default=10, help="calls per timing (and the step's timed steps, at least reg_every)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per component; the median is reported")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square float32 matmul timed as the peak")
    args, overrides = parser.parse_known_args()
    config = load_config(args.config, overrides)
    result = {"benchmark": "step_profile", "config": args.config, "overrides": overrides,
              **profile(config, args.iters, args.repeats, args.matmul_size)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
