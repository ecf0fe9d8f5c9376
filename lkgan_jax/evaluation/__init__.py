"""Evaluation metrics (docs/design.md §7): FID with an exact FID-Inception port, KID, landmark regression.

Modules: ``inception`` (the Flax network), ``inception_weights`` (torch-free reader of pytorch-fid's
weight file), ``preprocess`` (resize/scale protocols), ``features`` (batched feature extraction and
streaming moments), ``fid`` (Fréchet distance, statistics files, reference-statistics cache), ``kid``
(kernel inception distance), ``landmarks`` (the landmark-regression protocol).
"""
