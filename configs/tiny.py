"""Tiny config for tests and smoke runs: 32 px, small widths; 10 steps in seconds on a CPU."""

import ml_collections

from configs import default


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    c = default.get_config(variant)
    c.model.num_keypoints = 4
    c.model.z_dim = 16
    c.model.embed_dim = 8
    c.model.pose_depth = 2
    c.model.appearance_depth = 1
    c.model.g_const_channels = 16
    c.model.g_channels = (16, 16, 8, 8)
    c.model.spade_hidden = 8
    c.model.d_channels = (8, 16, 16, 16)
    c.model.d_dense = 16
    c.train.steps = 10
    c.train.term_grad_norms = False  # one more executable to compile; their own tests turn them on
    c.train.recovery_jitter_batch = 0  # a larger step to compile; its own tests turn it on
    c.data.random_flip = False
    c.train.fast_compile = True
    c.train.batch_size = 8
    c.train.ema_stats_batches = 2
    c.train.ema_stats_batch_size = 8
    c.train.reg_every = 4
    c.train.log_every = 2
    c.train.checkpoint_every = 5
    c.train.sample_every = 5
    c.train.num_samples = 4
    c.train.sample_upscale = 2
    c.train.eval_every = 0
    c.train.eval_num_samples = 8
    c.train.eval_cpd_pairs = 4
    c.train.eval_locality_pairs = 2
    c.detect.steps = 4
    c.detect.batch_size = 8
    c.detect.down_channels = (8, 16)
    c.detect.up_channels = (8,)
    c.detect.log_every = 2
    c.detect.checkpoint_every = 2
    c.detect.fast_compile = True
    c.detect.eval_every = 0
    c.edit.steps = 4
    c.edit.batch_size = 8
    c.edit.log_every = 2
    c.edit.checkpoint_every = 2
    c.edit.fast_compile = True
    c.edit.num_statistics = 64
    c.eval.batch_size = 8
    c.eval.num_samples = 8
    c.eval.num_real = 8
    c.eval.inception_batch_size = 4
    c.eval.kid_subset_size = 4
    c.eval.kid_subsets = 10
    c.eval.cpd_pairs = 4
    c.eval.judge_num_samples = 16
    c.judge.steps = 4
    c.judge.batch_size = 8
    c.judge.input_size = 16
    c.judge.channels = (8, 16)
    c.judge.feature_dim = 8
    c.judge.num_standardise = 64
    c.judge.num_test = 16
    c.judge.log_every = 2
    c.judge.checkpoint_every = 2
    c.judge.eval_every = 0
    c.judge.fast_compile = True
    c.eval.locality_pairs = 4
    c.eval.landmarks_num_train = 24
    c.eval.landmarks_num_test = 16
    c.eval.generated_pairs = 16
    return c
