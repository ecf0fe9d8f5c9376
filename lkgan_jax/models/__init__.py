"""LatentKeypointGAN models (Flax linen, NHWC)."""

from lkgan_jax.models.discriminator import Discriminator
from lkgan_jax.models.factory import make_discriminator, make_generator
from lkgan_jax.models.generator import Generator
from lkgan_jax.models.latent import Latent

__all__ = ["Discriminator", "Generator", "Latent", "make_discriminator", "make_generator"]
