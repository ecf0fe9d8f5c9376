"""GPU/TPU config at 256 px with the paper-size widths (channel plans: docs/design.md §2), bf16 compute."""

import ml_collections

from configs import paper_128


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = paper_128.get_config(variant)
    c.model.g_channels = (512, 512, 512, 512, 256, 128, 64)  # 4 … 256
    c.model.d_channels = (64, 128, 256, 512, 512, 512, 512)  # one more 512 block: 256 → 2
    c.data.resolution = 256
    return c
