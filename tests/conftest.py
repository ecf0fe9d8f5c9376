"""Test set-up: 8 simulated CPU devices, fast compiles, a persistent compilation cache.

Must run before any JAX computation, hence at conftest import time.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_disable_most_optimizations", True)
_CACHE = pathlib.Path(os.environ.get("LKGAN_TEST_CACHE", pathlib.Path.home() / ".cache" / "lkgan_jax_tests"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE / "xla"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# Grain reads absl flags inside its workers; pytest never parses them.
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
