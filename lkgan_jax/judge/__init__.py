"""The judge of image fidelity on procedural faces: network, weight file, training (docs/design.md §7.7)."""
