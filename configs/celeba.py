"""MAFL on aligned CelebA (`lkgan prepare celeba`, `--protocol mafl`) at 128 px, K = 10 (GPU/TPU).

Aims at the MAFL error of LatentKeypointGAN reported in the paper: 3.31 % of the inter-ocular distance
(K = 10); GANSeg reports 3.98 and AutoLink 3.54 on the same protocol. No augmentation: the aligned faces
are not flipped in the papers' training.

``data.path`` is a placeholder for ``OUT/train`` of ``lkgan prepare celeba --root DIR --out OUT``; with
``--out data/celeba`` it is already right, else give ``--config.data.path=OUT/train``. Everything else is
``configs/paper_128.py`` (the paper-size widths, bf16, batch 64, 100,000 steps; the detector at 128 px);
``:paper`` gives the paper's renderer. docs/benchmarks.md has the commands.
"""

import ml_collections

from configs import paper_128


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = paper_128.get_config(variant)
    c.model.num_keypoints = 10
    c.data.source = "arrayrecord"
    c.data.path = "data/celeba/train"  # placeholder: OUT/train of `lkgan prepare celeba --out OUT`
    c.data.resolution = 128
    c.data.random_flip = False
    return c
