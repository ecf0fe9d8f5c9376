"""The jitted JAX train step against its eager PyTorch peer, alternating; prints one JSON object.

  python benchmarks/step_vs_torch.py --config=configs/default.py [--rounds 2] [--steps 96] [--threads N] [--torch-device cuda] [--config.x=y ...]

Each round runs ``train_step.py`` and then ``torch_peer_step.py`` with the same config, overrides and
``--steps``, each in its own subprocess (never both at once, so they never share the cores).
``ratio`` is JAX steps/s ÷ PyTorch steps/s per round; ``meets_target`` is ``ratio_mean ≥ target_ratio``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

BENCHMARKS = pathlib.Path(__file__).resolve().parent


def run_benchmark(script: str, args: list[str]) -> dict:
    """Runs ``benchmarks/SCRIPT ARGS`` → its JSON result (the last line of its stdout)."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=BENCHMARKS.parent, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=96, help="timed steps of each run (at least train.reg_every)")
    parser.add_argument("--threads", type=int, default=None, help="the PyTorch peer's threads (default: every core)")
    parser.add_argument("--target", type=float, default=1.5, help="the JAX / PyTorch speed ratio to meet")
    parser.add_argument("--torch-device", default="cpu", help="the PyTorch peer's device: cpu (default), cuda")
    args, overrides = parser.parse_known_args()
    common = [f"--config={args.config}", "--steps", str(args.steps), *overrides]
    torch_args = common + ["--device", args.torch_device] + (["--threads", str(args.threads)] if args.threads else [])
    rounds = []
    for _ in range(args.rounds):
        jax_result = run_benchmark("train_step.py", common)
        torch_result = run_benchmark("torch_peer_step.py", torch_args)
        rounds.append({"jax_steps_per_s": jax_result["steps_per_s"], "torch_steps_per_s": torch_result["steps_per_s"],
                       "ratio": jax_result["steps_per_s"] / torch_result["steps_per_s"]})
    ratio_mean = sum(r["ratio"] for r in rounds) / len(rounds)
    print(json.dumps({
        "benchmark": "step_vs_torch", "config": args.config, "overrides": overrides, "steps": args.steps,
        "batch_size": torch_result["batch_size"], "device_kind": jax_result["device_kind"],
        "torch_threads": torch_result["threads"], "torch_version": torch_result["torch_version"], "torch_device": args.torch_device,
        "params_g": {"jax": jax_result["params_g"], "torch": torch_result["params_g"]},
        "params_d": {"jax": jax_result["params_d"], "torch": torch_result["params_d"]},
        "rounds": rounds, "ratio_mean": ratio_mean, "target_ratio": args.target, "meets_target": ratio_mean >= args.target,
    }))


if __name__ == "__main__":
    main()
