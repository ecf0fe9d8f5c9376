"""KeypointGAN at the official 128-px size and widths (GPU/TPU), bf16 compute.

The networks have the official parameter counts (Φ 3,124,801; Ψ 4,825,635; η 1,181,184; D 2,762,689
per scale). With ``--config.perceptual.vgg_weights=PATH --config.perceptual.vgg_sha256=HASH`` the
reconstruction is compared in VGG-19 features, otherwise in a frozen random VGG-19 trunk.
"""

import ml_collections

from configs import keypointgan


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = keypointgan.get_config(variant)
    c.model.encoder_channels = (32, 64, 128, 256)
    c.model.regressor_channels = (32, 64, 128, 256)  # 128 → 16×16 heatmaps
    c.model.decoder_channels = (32, 64, 128, 256)
    c.model.disc_channels = 64
    c.model.disc_scales = 3
    c.model.dtype = "bfloat16"
    c.data.resolution = 128
    c.data.num_threads = 16
    c.data.prefetch = 8
    c.data.num_workers = 8
    c.perceptual.width_divisor = 1
    c.prior.size = 100_000
    c.pretrain.steps = 50_000
    c.pretrain.batch_size = 16
    c.pretrain.log_every = 500
    c.pretrain.checkpoint_every = 5_000
    c.train.steps = 100_000
    c.train.log_every = 100
    c.train.checkpoint_every = 5_000
    c.train.sample_every = 2_000
    c.train.num_samples = 16
    c.train.sample_upscale = 1
    c.train.eval_every = 5_000
    c.train.eval_num_test = 1000
    return c
