"""Tai-Chi-HD (`lkgan prepare taichi`, `--protocol taichi`) at 128 px, K = 10 (GPU/TPU).

Aims at LatentKeypointGAN's Taichi error reported in the paper: 437.69, the summed error (mean absolute
error per joint and coordinate in pixels of the 256-px evaluation frames, summed over 18 joints and both
coordinates; lower is better). GANSeg reports 417.17 and AutoLink 316.10. Augmentation as in the
authors' training: random horizontal flips. The GAN trains on ``OUT/train`` (every training-video frame);
the regression is fitted on ``OUT/regression_train`` and scored on ``OUT/test``.

``data.path`` is a placeholder for ``OUT/train`` of ``lkgan prepare taichi --root DIR --out OUT``; with
``--out data/taichi`` it is already right, else give ``--config.data.path=OUT/train``. Everything else
is ``configs/paper_128.py``; ``:paper`` gives the paper's renderer.
"""

import ml_collections

from configs import paper_128


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = paper_128.get_config(variant)
    c.model.num_keypoints = 10
    c.data.source = "arrayrecord"
    c.data.path = "data/taichi/train"  # placeholder: OUT/train of `lkgan prepare taichi --out OUT`
    c.data.resolution = 128
    c.data.random_flip = True
    return c
