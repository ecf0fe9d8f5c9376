"""KeypointGAN on procedural faces at 64 px with narrow widths: 15-18 min on 2 CPU cores (docs/keypointgan.md).

Pose is learned through a skeleton-image bottleneck from thin-plate-spline pairs of unlabelled training
faces and an unpaired pose prior (landmarks of a disjoint set of faces); docs/design.md §13.

Variants (``--config=configs/keypointgan.py:VARIANT``; configs/keypointgan_128.py takes the same):
  no_bottleneck: the conditional decoder Ψ sees Φ's skeleton image directly (no η → β re-rendering);
  no_prior_d:    without the pose-prior discriminator (its loss weight is 0);
  prior50:       the prior reduced to 50 poses (η is pre-trained on those 50 as well).
"""

import ml_collections

from configs import default
from lkgan_jax.data.procedural import LEFT_RIGHT_PAIRS, SKELETON_EDGES

VARIANTS = ("no_bottleneck", "no_prior_d", "prior50")


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant and variant not in VARIANTS:
        raise ValueError(f"unknown config variant {variant!r}; known: {', '.join(VARIANTS)}")
    base = default.get_config()
    c = ml_collections.ConfigDict()
    c.system = "keypointgan"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.num_points = 10  # K keypoints, in the prior's landmark order
    c.model.edges = tuple(SKELETON_EDGES)  # skeleton edges (i, j) drawn by the renderer β
    c.model.flip_pairs = tuple(LEFT_RIGHT_PAIRS)  # left/right pairs, for the evaluation's flip handling
    c.model.renderer = "official"  # official: exp(-d/σ²) of the distance d | squared: exp(-γ d²)
    c.model.sigma = 0.2
    c.model.gamma = 903.0  # the squared form's γ (same half-width as σ = 0.2 on a 128-px grid)
    # Widths per resolution level; len(...) - 1 stride-2 stages (the official 128-px model: 32, 64, 128, 256).
    c.model.encoder_channels = (8, 16, 32, 64)  # Φ: image → skeleton image (U-Net)
    c.model.regressor_channels = (8, 16, 32)  # η: skeleton image → K heatmaps at R / 2^(len-1) → soft-argmax
    c.model.decoder_channels = (8, 16, 32, 64)  # Ψ: (skeleton image, style image) → image
    c.model.disc_channels = 16  # D: first layer width of each PatchGAN (64 official)
    c.model.disc_layers = 3
    c.model.disc_scales = 2  # 64 and 32 px (the official 3 needs >= 96 px: 128, 64 and 32)
    c.model.bottleneck = "skeleton"  # skeleton: Ψ(β(η(Φ(x))), x') | none: Ψ(Φ(x), x')
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)

    c.data = base.data
    c.data.resolution = 64

    # The unpaired pose prior: landmarks of images that are never trained on.
    c.prior = ml_collections.ConfigDict()
    c.prior.source = "procedural"  # procedural (its prior split, disjoint from train and test) | folder:PATH
    c.prior.size = 20000  # poses drawn from the source (a folder: at most its count; 0: all of a folder)
    c.prior.seed = 0  # which poses a reduced prior keeps

    c.perceptual = ml_collections.ConfigDict()
    c.perceptual.kind = "auto"  # auto: vgg19 with vgg_weights, else random_vgg19 | vgg19 | random_vgg19 | pyramid
    c.perceptual.vgg_weights = ""  # local .npz of VGG-19 conv weights (docs/design.md §13.7)
    c.perceptual.vgg_sha256 = ""  # its expected SHA-256
    c.perceptual.relu = False  # False: the official code's VGG without ReLUs
    c.perceptual.width_divisor = 8  # random_vgg19 only: VGG-19 widths / this (1 at paper size)
    c.perceptual.seed = 0  # random_vgg19's fixed weights
    c.perceptual.ema_decay = 0.99  # per-layer normalisation by a running mean of the loss

    # η pre-training on poses of the prior alone, rendered by β (written to WORKDIR/regressor/).
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.steps = 1500
    c.pretrain.batch_size = 32
    c.pretrain.lr = 2e-4
    c.pretrain.clip = 1.0
    c.pretrain.seed = 1
    c.pretrain.log_every = 100
    c.pretrain.checkpoint_every = 500
    c.pretrain.keep_checkpoints = 2
    c.pretrain.fast_compile = False
    c.pretrain.profile_steps = ""

    c.train = ml_collections.ConfigDict()
    c.train.steps = 2000
    c.train.batch_size = 16
    c.train.lr = 2e-4  # Φ+Ψ, D and η each have their own Adam with these settings
    c.train.beta1 = 0.5
    c.train.beta2 = 0.999
    c.train.clip = 1.0  # global-norm gradient clip, per optimiser
    c.train.gan_weight = 10.0  # λ of the pose-prior LSGAN term
    c.train.reconstruction_weight = 10.0  # λ of the normalised perceptual reconstruction
    c.train.finetune_regressor = True
    c.train.regressor_fake_weight = 0.1  # η fine-tuning: ‖β(η(Φ(x))) − Φ(x)‖² (Φ's output held fixed)
    c.train.regressor_real_weight = 0.9  # η fine-tuning: ‖η(β(p̄)) − p̄‖² on prior poses
    c.train.pool_size = 50  # history of Φ outputs shown to D as fakes (0: none)
    # Thin-plate-spline pairs: the style image x' gets a full TPS, the target x an affine warp.
    c.train.style_rotation_deg = 5.0
    c.train.style_scale = 0.05
    c.train.style_translation = 0.05
    c.train.style_warp = (0.0005, 0.005)
    c.train.target_rotation_deg = 5.0
    c.train.target_scale = 0.05
    c.train.target_translation = 0.05
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.sample_every = 500
    c.train.num_samples = 8  # rows of the sample grid
    c.train.sample_upscale = 2
    c.train.sample_seed = 0  # the style warps of the sample grid
    c.train.eval_every = 500  # direct landmark error on eval_num_test test faces (0: never)
    c.train.eval_num_test = 200
    c.train.fast_compile = False
    c.train.profile_steps = ""

    c.eval = base.eval
    c.eval.landmarks_num_train = 1000
    c.eval.landmarks_num_test = 500
    c.mesh = base.mesh

    if variant == "no_bottleneck":
        c.model.bottleneck = "none"
    elif variant == "no_prior_d":
        c.train.gan_weight = 0.0
    elif variant == "prior50":
        c.prior.size = 50
    return c
