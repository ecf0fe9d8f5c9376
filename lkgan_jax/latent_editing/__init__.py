"""Learned latent editing: attribute editors on LatentKeypointGAN's latent (docs/design.md §14)."""
