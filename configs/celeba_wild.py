"""CelebA in the wild (`lkgan prepare celeba_wild`, `--protocol celeba_wild`) at 128 px, K = 8 (GPU/TPU).

Aims at LatentKeypointGAN's error reported in the paper: 5.63 % of the inter-ocular distance with K = 8
(12.1 with K = 4: ``--config.model.num_keypoints=4``). GANSeg reports 6.18 (K = 8) and 12.26 (K = 4),
AutoLink 5.24 and 6.11. Augmentation as in the authors' training: random horizontal flips.

``data.path`` is a placeholder for ``OUT/train`` of ``lkgan prepare celeba_wild --root DIR --out OUT``;
with ``--out data/celeba_wild`` it is already right, else give ``--config.data.path=OUT/train``.
Everything else is ``configs/paper_128.py``; ``:paper`` gives the paper's renderer.
"""

import ml_collections

from configs import paper_128


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = paper_128.get_config(variant)
    c.model.num_keypoints = 8
    c.data.source = "arrayrecord"
    c.data.path = "data/celeba_wild/train"  # placeholder: OUT/train of `lkgan prepare celeba_wild --out OUT`
    c.data.resolution = 128
    c.data.random_flip = True
    return c
