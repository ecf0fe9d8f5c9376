"""Tiny KeypointGAN config for tests and smoke runs: 32 px, a few channels; seconds on a CPU."""

import ml_collections

from configs import keypointgan


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = keypointgan.get_config(variant)
    c.data.resolution = 32
    c.model.encoder_channels = (4, 8, 8)
    c.model.regressor_channels = (4, 8)  # 32 → 16×16 heatmaps
    c.model.decoder_channels = (4, 8, 8)
    c.model.disc_channels = 4
    c.model.disc_layers = 2
    c.model.disc_scales = 2
    c.perceptual.width_divisor = 16
    c.prior.size = min(c.prior.size, 200)
    c.pretrain.steps = 4
    c.pretrain.batch_size = 8
    c.pretrain.log_every = 2
    c.pretrain.checkpoint_every = 2
    c.pretrain.fast_compile = True
    c.train.steps = 4
    c.train.batch_size = 8
    c.train.pool_size = 4
    c.train.log_every = 2
    c.train.checkpoint_every = 2
    c.train.sample_every = 4
    c.train.num_samples = 2
    c.train.eval_every = 4
    c.train.eval_num_test = 8
    c.train.fast_compile = True
    c.eval.batch_size = 8
    c.eval.landmarks_num_train = 24
    c.eval.landmarks_num_test = 16
    return c
