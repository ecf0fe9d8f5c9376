"""Training of LatentKeypointGAN: state, losses, the jitted step and the host loop."""
