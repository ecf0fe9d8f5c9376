"""CUB-200-2011 birds (`lkgan prepare cub`, `--protocol cub`) at 128 px, K = 10 (GPU/TPU).

Aims at LatentKeypointGAN's "CUB aligned" error reported in the paper: 5.21 (mean L2 over the visible
parts, % of the 128-px image side) with K = 10; GANSeg reports 3.23 and AutoLink 3.51. The papers'
CUB-001/002/003 and CUB-all use K = 4 (``--config.model.num_keypoints=4``; LatentKeypointGAN 22.6,
29.1, 21.2 and 14.7): for CUB-001/002/003 train on ``OUT/train_three`` and evaluate with ``--protocol
cub_001`` (``cub_002``, ``cub_003``).

Augmentation, as the authors train CUB: a random resized crop (area 0.9–1, aspect ratio 0.9–1.1,
torchvision's RandomResizedCrop) and random horizontal flips.

``data.path`` is a placeholder for ``OUT/train`` of ``lkgan prepare cub --root DIR --out OUT``; with
``--out data/cub`` it is already right, else give ``--config.data.path=OUT/train``. Everything else is
``configs/paper_128.py``; ``:paper`` gives the paper's renderer.
"""

import ml_collections

from configs import paper_128


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = paper_128.get_config(variant)
    c.model.num_keypoints = 10
    c.data.source = "arrayrecord"
    c.data.path = "data/cub/train"  # placeholder: OUT/train of `lkgan prepare cub --out OUT` (OUT/train_three: CUB-001/2/3)
    c.data.resolution = 128
    c.data.random_flip = True
    c.data.random_crop_scale = (0.9, 1.0)
    c.data.random_crop_ratio = (0.9, 1.1)
    return c
