"""Edit operations on the explicit latent and the ops.json recipe format (docs/design.md §4)."""
