"""GPU/TPU config at 64 px with the paper-size widths (the 128-px channel plan of docs/design.md §2
without its last block), bf16 compute. On 2 CPU cores one train step at batch 32 takes ~30 s."""

import ml_collections

from configs import paper_128


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = paper_128.get_config(variant)
    c.model.g_channels = (512, 512, 512, 256, 128)  # 4, 8, 16, 32, 64
    c.model.d_channels = (64, 128, 256, 512, 512)  # 64 → 2
    c.data.resolution = 64
    return c
