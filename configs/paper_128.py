"""GPU/TPU config at 128 px with the paper-size widths (channel plans: docs/design.md §2), bf16 compute.

Data: procedural faces by default; ``--config.data.source=folder --config.data.path=DIR`` for a folder.
"""

import ml_collections

from configs import default


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = default.get_config(variant)
    c.model.z_dim = 256
    c.model.embed_dim = 128
    c.model.g_const_channels = 512
    c.model.g_channels = (512, 512, 512, 256, 128, 64)  # 4, 8, 16, 32, 64, 128
    c.model.spade_hidden = 128
    c.model.d_channels = (64, 128, 256, 512, 512, 512)  # 128 → 2
    c.model.d_dense = 512
    c.model.dtype = "bfloat16"
    c.train.r1_gamma = 10.0
    # The default's recovery jitter is measured at 32 px only (docs/ablation.md); off here, where it would
    # add 4 rendered fakes and their D passes to each step of the speed figures (docs/speed.md).
    c.train.recovery_jitter_batch = 0
    c.data.resolution = 128
    c.data.num_threads = 16
    c.data.prefetch = 8
    c.data.num_workers = 8
    c.train.steps = 100_000
    c.train.batch_size = 64
    c.train.log_every = 100
    c.train.checkpoint_every = 5_000
    c.train.sample_every = 2_000
    c.train.num_samples = 64
    c.train.sample_upscale = 1
    c.train.ema_warmup = False
    c.train.eval_every = 5_000  # CPD on 200 pairs at each checkpoint
    c.detect.steps = 10_000  # 10 epochs × 1,000 batches of 64: GANSeg's schedule (docs/design.md §8)
    c.detect.batch_size = 64
    c.detect.input_size = 128
    c.detect.down_channels = (64, 128, 256, 512)  # 128 → 8
    c.detect.up_channels = (256, 128)  # 8 → 32
    c.detect.log_every = 100
    c.detect.checkpoint_every = 1_000
    c.detect.eval_every = 5_000
    c.eval.landmarks_num_train = 5_000
    c.eval.landmarks_num_test = 1_000
    c.eval.num_samples = 50_000
    c.eval.num_real = 50_000
    return c
