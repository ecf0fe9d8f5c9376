"""Eager PyTorch peer of the JAX train step (same architecture, same step) on the CPU; prints one JSON object.

  python benchmarks/torch_peer_step.py --config=configs/default.py [--steps 96] [--threads N] [--device cuda] [--config.x=y ...]

Mirrored, with every number read from the loaded config: G (models/generator.py) — KeypointMapping's
pose, appearance and background MLPs and part table; SpadeRenderer from zeros (or the learned 4×4
constant), bilinear ×2 upsampling with half-pixel centres, SpadeResBlocks whose SPADEs are three plain
3×3 convs (shared → LeakyReLU → γ, β) over a parameter-free BatchNorm (or GroupNorm), the two head
convs and tanh; the Gaussian conditioning maps of heatmaps.embedding_map (width floor,
min_keypoint_size); D (models/discriminator.py) with its keypoint-recovery head; and one step of
train/step.py — D on fresh train-mode fakes (logistic loss, recovery L1, the lazy R1 or gp penalty
every ``train.reg_every`` steps), G on fresh noise through the updated D, Adam (train/state.py, with
``lazy_reg_correction``), EMA of G's parameters with the warm-up decay.

Not mirrored: jit/compile (eager, as a typical PyTorch training loop), the JAX step's fused SPADE
convs (same math), its logging-only health signals (NaN tracking, norms on logged steps), its RNG
streams, Flax's biased running variance (PyTorch keeps the unbiased one; running statistics only), and
the locality, equivariance and recovery-jitter options (an error). float32 only. The JAX parameter
counts come from the JAX trainer's abstract state (shapes only, nothing compiled).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from lkgan_jax.config_loading import load_config  # noqa: E402


def _kaiming(weight: torch.Tensor, slope: float, scale: float = 1.0) -> None:
    """``layers.kaiming_leaky``: N(0, 2 / ((1 + a²) fan_in)), its std × ``scale``."""
    nn.init.kaiming_normal_(weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
    with torch.no_grad():
        weight.mul_(scale)


def conv(cin: int, cout: int, k: int, slope: float, stride: int = 1, bias: bool = True, scale: float = 1.0) -> nn.Conv2d:
    """``layers.conv``: k×k, padding k//2, Kaiming × ``scale``, zero bias."""
    layer = nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias)
    _kaiming(layer.weight, slope, scale)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def linear(cin: int, cout: int, slope: float, scale: float = 1.0) -> nn.Linear:
    """``layers.dense``."""
    layer = nn.Linear(cin, cout)
    _kaiming(layer.weight, slope, scale)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(width: int, depth: int, out: int, slope: float) -> nn.Sequential:
    """``layers.MLP``: ``depth`` × (Linear(width) + LeakyReLU), then Linear(out); the input is ``width`` wide."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [linear(width, width, slope), nn.LeakyReLU(slope)]
    return nn.Sequential(*layers, linear(width, out, slope))


class KeypointMapping(nn.Module):
    """Stage 1: (B, Z) × 3 → keypoints (B, K, 2), part embeddings (B, K, D), background (B, D), τ (1, K)."""

    def __init__(self, m) -> None:
        super().__init__()
        k, d, z = m.num_keypoints, m.embed_dim, m.z_dim
        self.k, self.tau, self.divisor = k, m.tau, m.tanh_divisor
        self.size_range = m.get("part_size_range", 1.0)
        self.pose_mlp = mlp(z, m.pose_depth, 2 * k, m.leaky_slope)
        self.part_table = nn.Parameter(torch.randn(k, d))
        self.appearance_mlp = mlp(z, m.appearance_depth, d, m.leaky_slope)
        self.background_mlp = mlp(z, m.appearance_depth, d, m.leaky_slope)
        self.part_log_size = nn.Parameter(torch.zeros(k)) if self.size_range > 1 else None

    def forward(self, z_pose, z_app, z_bg):
        keypoints = torch.tanh(self.pose_mlp(z_pose) / self.divisor).view(-1, self.k, 2)
        parts = self.part_table[None] * self.appearance_mlp(z_app)[:, None, :]
        background = self.background_mlp(z_bg)
        if self.part_log_size is None:
            tau = torch.full((1, self.k), self.tau)
        else:
            tau = (self.tau * self.size_range ** (2.0 * torch.tanh(self.part_log_size)))[None]
        return keypoints, parts, background, tau


def embedding_map(keypoints, parts, background, tau, size: int, floor_pixels: float, min_keypoint_size: int) -> torch.Tensor:
    """``heatmaps.embedding_map`` (Gaussian footprints, all parts active, no gating) → (B, D, S, S)."""
    if size < min_keypoint_size:
        return background[:, :, None, None].expand(-1, -1, size, size)
    if floor_pixels > 0:
        tau = torch.clamp(tau, min=(floor_pixels * 2.0 / max(size - 1, 1)) ** 2)
    grid = torch.linspace(-1.0, 1.0, size)
    inv_tau = (1.0 / tau)[..., None]
    along_x = torch.exp(-torch.square(grid - keypoints[..., 0:1]) * inv_tau)  # (B, K, S): columns
    along_y = torch.exp(-torch.square(grid - keypoints[..., 1:2]) * inv_tau)  # (B, K, S): rows
    heatmaps = along_y[..., :, None] * along_x[..., None, :]  # (B, K, S, S)
    background_weight = 1.0 - heatmaps.amax(dim=1, keepdim=True)
    return torch.einsum("bkyx,bkd->bdyx", heatmaps, parts) + background_weight * background[:, :, None, None]


def _norm(features: int, m) -> nn.Module:
    groups = m.get("g_norm_groups", 0)
    if groups:
        return nn.GroupNorm(groups, features, eps=m.bn_epsilon, affine=False)
    return nn.BatchNorm2d(features, eps=m.bn_epsilon, momentum=1.0 - m.bn_momentum, affine=False)  # Flax 0.9 = torch 0.1


class Spade(nn.Module):
    """``generator.Spade``: norm(x) · (1 + γ(F)) + β(F), F = LeakyReLU(shared(cond))."""

    def __init__(self, features: int, m) -> None:
        super().__init__()
        self.slope = m.leaky_slope
        self.norm = _norm(features, m)
        self.shared = conv(m.embed_dim, m.spade_hidden, 3, self.slope)
        self.gamma = conv(m.spade_hidden, features, 3, self.slope)
        self.beta = conv(m.spade_hidden, features, 3, self.slope)

    def forward(self, x, cond):
        hidden = F.leaky_relu(self.shared(cond), self.slope)
        return self.norm(x) * (1.0 + self.gamma(hidden)) + self.beta(hidden)


class SpadeResBlock(nn.Module):
    """``generator.SpadeResBlock``; a SPADE + 3×3 conv shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, m) -> None:
        super().__init__()
        slope, middle = m.leaky_slope, min(cin, cout)
        self.slope = slope
        self.spade_0 = Spade(cin, m)
        self.conv_0 = conv(cin, middle, 3, slope, bias=False)
        self.spade_1 = Spade(middle, m)
        self.conv_1 = conv(middle, cout, 3, slope, scale=m.get("g_residual_init_scale", 1.0))
        self.learned_shortcut = cin != cout
        if self.learned_shortcut:
            self.spade_shortcut = Spade(cin, m)
            self.conv_shortcut = conv(cin, cout, 3, slope)

    def forward(self, x, cond):
        h = self.conv_0(F.leaky_relu(self.spade_0(x, cond), self.slope))
        h = self.conv_1(F.leaky_relu(self.spade_1(h, cond), self.slope))
        shortcut = self.conv_shortcut(self.spade_shortcut(x, cond)) if self.learned_shortcut else x
        return h + shortcut


class Generator(nn.Module):
    """``generator.Generator``: noise → (images (B, 3, R, R) in [-1, 1], keypoints (B, K, 2))."""

    def __init__(self, m, keypoint_jitter: float = 0.0) -> None:
        super().__init__()
        self.slope, self.const_channels, self.jitter = m.leaky_slope, m.g_const_channels, keypoint_jitter
        self.floor, self.min_size = m.get("tau_floor_pixels", 0.0), m.get("min_keypoint_size", 0)
        self.mapping = KeypointMapping(m)
        learned = m.get("learned_layout", True)
        self.const = nn.Parameter(torch.randn(1, m.g_const_channels, 4, 4)) if learned else None
        widths = [m.g_const_channels, *m.g_channels]
        self.blocks = nn.ModuleList(SpadeResBlock(cin, cout, m) for cin, cout in zip(widths[:-1], widths[1:]))
        self.head_0 = conv(widths[-1], widths[-1], 3, self.slope)
        self.head_rgb = conv(widths[-1], 3, 3, self.slope, scale=m.get("g_rgb_init_scale", 1.0))

    def forward(self, z_pose, z_app, z_bg):
        keypoints, parts, background, tau = self.mapping(z_pose, z_app, z_bg)
        if self.jitter > 0:  # train.keypoint_jitter
            keypoints = keypoints + self.jitter * torch.randn_like(keypoints)
        batch = keypoints.shape[0]
        if self.const is None:
            x = torch.zeros(batch, self.const_channels, 4, 4)
        else:
            x = self.const.expand(batch, -1, -1, -1)
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(x, embedding_map(keypoints, parts, background, tau, x.shape[-1], self.floor, self.min_size))
        x = self.head_0(F.leaky_relu(x, self.slope))
        x = self.head_rgb(F.leaky_relu(x, self.slope))
        return torch.tanh(x), keypoints


class DiscriminatorBlock(nn.Module):
    """``discriminator.DiscriminatorBlock``: 3×3 → 3×3 → 3×3 stride 2, plus a 1×1 stride-2 skip; sum / √2."""

    def __init__(self, cin: int, features: int, slope: float) -> None:
        super().__init__()
        self.slope = slope
        self.conv_0 = conv(cin, features, 3, slope)
        self.conv_1 = conv(features, features, 3, slope)
        self.conv_down = conv(features, features, 3, slope, stride=2)
        self.skip = conv(cin, features, 1, slope, stride=2)

    def forward(self, x):
        h = F.leaky_relu(self.conv_0(x), self.slope)
        h = F.leaky_relu(self.conv_1(h), self.slope)
        return (self.conv_down(h) + self.skip(x)) * (1.0 / math.sqrt(2.0))


class Discriminator(nn.Module):
    """``discriminator.Discriminator``: images → logits (B,) and, with K > 0, keypoints (B, K, 2)."""

    def __init__(self, m, resolution: int, num_keypoints: int) -> None:
        super().__init__()
        slope, self.slope, self.k = m.leaky_slope, m.leaky_slope, num_keypoints
        widths = [3, *m.d_channels]
        self.blocks = nn.Sequential(*(DiscriminatorBlock(cin, cout, slope) for cin, cout in zip(widths[:-1], widths[1:])))
        side = resolution // 2 ** len(m.d_channels)
        self.dense = linear(widths[-1] * side * side, m.d_dense, slope)  # JAX flattens (H, W, C): same shape
        self.logit = linear(m.d_dense, 1, slope)
        self.keypoint_head = linear(m.d_dense, 2 * num_keypoints, slope, m.get("keypoint_head_init_scale", 1.0)) if num_keypoints else None

    def forward(self, images):
        x = F.leaky_relu(self.dense(self.blocks(images).flatten(1)), self.slope)
        logits = self.logit(x)[:, 0]
        keypoints = self.keypoint_head(x).view(-1, self.k, 2) if self.keypoint_head is not None else None
        return logits, keypoints


UNSUPPORTED = {  # config option → its off value: the JAX step's optional terms this peer does not mirror
    "model.part_footprint": "gaussian",
    "model.part_mask_gating": False,
    "model.keypoint_layout_encoding": 0,
    "model.dtype": "float32",
    "train.equivariance_weight": 0.0,
    "train.equivariance_outside_weight": 0.0,
}


def check_supported(config) -> None:
    from lkgan_jax.train.step import recovery_jitter_on  # JAX only where needed, as in jax_param_counts

    for name, off in UNSUPPORTED.items():
        section, key = name.split(".")
        value = config[section].get(key, off)
        if value != off:
            raise ValueError(f"torch_peer_step mirrors {name}={off!r} only, got {value!r}: pass --config.{name}={off}")
    if recovery_jitter_on(config.train):  # the default's: time both with the flag below
        raise ValueError(f"torch_peer_step mirrors train.recovery_jitter_batch=0 only, got {config.train.recovery_jitter_batch!r}: "
                         "pass --config.train.recovery_jitter_batch=0")
    if config.train.penalty not in ("r1", "gp"):
        raise ValueError(f"train.penalty must be 'r1' or 'gp', got {config.train.penalty!r}")


class PeerTrainer:
    """The models, optimisers and EMA of one run; ``step(real, do_reg)`` is ``train/step.py``'s step."""

    def __init__(self, config) -> None:
        check_supported(config)
        m, t = config.model, config.train
        self.t, self.z_dim = t, m.z_dim
        self.recovery_weight = m.get("keypoint_recovery_weight", 0.0)
        self.g = Generator(m, t.get("keypoint_jitter", 0.0))
        self.d = Discriminator(m, config.data.resolution, m.num_keypoints if self.recovery_weight > 0 else 0)
        c = t.reg_every / (t.reg_every + 1) if t.get("lazy_reg_correction", False) else 1.0
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2), eps=t.adam_eps)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=t.lr_d * c, betas=(t.beta1**c, t.beta2**c), eps=t.adam_eps)
        self.g_params = list(self.g.parameters())
        self.ema_params = [p.detach().clone() for p in self.g_params]
        self.g.train()
        self.step_count = 0

    def noise(self, batch: int):
        return tuple(torch.randn(batch, self.z_dim) for _ in range(3))

    def recovery(self, predicted, keypoints):
        return self.recovery_weight * (predicted - keypoints.detach()).abs().mean() if self.recovery_weight > 0 else 0.0

    def penalty(self, real):
        """(penalty, real logits) from one forward pass: R1 γ/2·mean‖∇D‖²·reg_every, or gp."""
        real = real.detach().requires_grad_(True)
        logits, _ = self.d(real)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        squared = grads.square().flatten(1).sum(1)
        if self.t.penalty == "r1":
            return 0.5 * self.t.r1_gamma * self.t.reg_every * squared.mean(), logits
        return self.t.gp_weight * torch.square(torch.sqrt(squared + 1e-12) - 1.0).mean(), logits

    def step(self, real: torch.Tensor, do_reg: bool) -> tuple[torch.Tensor, torch.Tensor]:
        batch = real.shape[0]
        # D update on fresh fakes (G in train mode: its BatchNorm statistics advance).
        with torch.no_grad():
            fake, fake_keypoints = self.g(*self.noise(batch))
        self.d.requires_grad_(True)
        logits_fake, predicted = self.d(fake)
        d_loss = F.softplus(logits_fake).mean() + self.recovery(predicted, fake_keypoints)
        if do_reg:
            penalty, logits_real = self.penalty(real)
            d_loss = d_loss + penalty
        else:
            logits_real, _ = self.d(real)
        d_loss = d_loss + F.softplus(-logits_real).mean()
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()

        # G update with fresh noise through the updated D.
        self.d.requires_grad_(False)
        images, keypoints = self.g(*self.noise(batch))
        logits, predicted = self.d(images)
        g_loss = F.softplus(-logits).mean() + self.recovery(predicted, keypoints)
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()

        # EMA of G's parameters (``step.ema_decay_at``).
        decay = self.t.ema_decay
        if self.t.ema_warmup:
            decay = min(decay, (1.0 + self.step_count) / (10.0 + self.step_count))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.g_params, 1.0 - decay)
        self.step_count += 1
        return d_loss.detach(), g_loss.detach()


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def jax_param_counts(config) -> tuple[int, int]:
    """The JAX trainer's G and D parameter counts, from its abstract state (shapes only)."""
    import jax

    from lkgan_jax.train.loop import build_trainer

    state = build_trainer(config).abstract_state
    return tuple(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)) for tree in (state.g_params, state.d_params))


def is_penalty_step(step: int, reg_every: int) -> bool:
    """``train.loop.is_penalty_step``: the last of every ``reg_every`` steps."""
    return (step + 1) % reg_every == 0


def _run(trainer: PeerTrainer, real: torch.Tensor, reg_every: int, steps: int) -> None:
    for i in range(steps):
        trainer.step(real, is_penalty_step(i, reg_every))


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(config, steps: int, threads: int, device: str = "cpu") -> dict:
    """Times ``steps`` (at least ``reg_every``) peer steps after ``reg_every`` warm-up steps on ``device``
    (every tensor is created there: ``torch.set_default_device``) → result fields."""
    torch.set_num_threads(threads)
    torch.set_default_device(device)
    torch.manual_seed(config.seed)
    t = config.train
    trainer = PeerTrainer(config)
    params_g, params_d = count(trainer.g), count(trainer.d)  # before a G step freezes D
    r = config.data.resolution
    real = torch.rand(t.batch_size, 3, r, r) * 2.0 - 1.0
    _run(trainer, real, t.reg_every, t.reg_every)  # warm-up, the penalty step included
    timed = max(steps, t.reg_every)
    _synchronize(device)
    start = time.perf_counter()
    _run(trainer, real, t.reg_every, timed)
    _synchronize(device)
    seconds = time.perf_counter() - start
    return {"resolution": r, "batch_size": t.batch_size, "steps_timed": timed, "steps_per_s": timed / seconds,
            "images_per_s": timed * t.batch_size / seconds, "params_g": params_g, "params_d": params_d}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after warm-up (at least train.reg_every)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: every core)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    args, overrides = parser.parse_known_args()
    config = load_config(args.config, overrides)
    check_supported(config)
    params_g_jax, params_d_jax = jax_param_counts(config)
    result = {"benchmark": "torch_peer_step", "config": args.config, "overrides": overrides, "threads": args.threads,
              "torch_version": torch.__version__, "device": args.device, **measure(config, args.steps, args.threads, args.device),
              "params_g_jax": params_g_jax, "params_d_jax": params_d_jax}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
