"""Test set-up: 8 simulated CPU devices, fast compiles, a persistent compilation cache.

Must run before any JAX computation, hence at conftest import time.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_CACHE = pathlib.Path(os.environ.get("LKGAN_TEST_CACHE", pathlib.Path.home() / ".cache" / "lkgan_jax_tests"))
# As environment variables, so that the processes tests start (multi-process runs, benchmark scripts,
# the studio server) compile as cheaply and share the cache.
os.environ.update(JAX_DISABLE_MOST_OPTIMIZATIONS="1", JAX_COMPILATION_CACHE_DIR=str(_CACHE / "xla"),
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

# Grain reads absl flags inside its workers; pytest never parses them.
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A 4-step `configs/tiny.py` GAN run (checkpoints at steps 2 and 4) and its final state."""
    from lkgan_jax.config_loading import load_config
    from lkgan_jax.train import loop

    workdir = tmp_path_factory.mktemp("tiny_run")
    overrides = ["--config.train.steps=4", "--config.train.checkpoint_every=2", "--config.train.sample_every=4"]
    state = loop.train_and_evaluate(load_config("configs/tiny.py", overrides), workdir)
    return workdir, state


@pytest.fixture(scope="session")
def tiny_keypointgan_run(tmp_path_factory):
    """A `configs/keypointgan_tiny.py` KeypointGAN run trained through the CLI (4 steps, η pre-trained 4 steps)."""
    from lkgan_jax.cli.main import main

    workdir = tmp_path_factory.mktemp("tiny_keypointgan_run") / "run"
    assert main(["train", "--workdir", str(workdir), "--config=configs/keypointgan_tiny.py"]) == 0
    return workdir


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory):
    """Random FID-Inception weights saved in pytorch-fid's file format (not the real file's hash: pass
    ``--allow-unverified-weights``)."""
    from lkgan_jax.evaluation import inception, inception_weights

    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    inception_weights.write_torch_state_dict(path, inception_weights.state_dict_from_params(inception.random_params(seed=0)))
    return path
