"""lkgan_jax: controllable image generation through latent keypoints, in JAX/Flax."""

from importlib import metadata

try:
    __version__ = metadata.version("lkgan_jax")
except metadata.PackageNotFoundError:  # a source checkout that is not installed
    __version__ = "unknown"
