"""GAN-based keypoint detection: the detector, its training on generated pairs, inference (docs/design.md §8)."""
