"""Default config: LatentKeypointGAN on procedural faces at 32 px, about 13½ min on 2 idle CPU cores.

Variants (``--config=configs/default.py:VARIANT``; the paper_* configs take the same):
  paper: the paper's renderer, objective and initialisation: a learned 4×4 start constant, the
    fixed-τ heatmaps at every layer, no keypoint recovery (nor its jitter), no flips, a full-scale
    RGB conv and GANSeg's keypoint tanh divisor of 20.
The default instead starts from zeros and floors each heatmap's width at one pixel of its layer, so
that the layout comes from the keypoints, and its discriminator must read the keypoints back from
the images (keypoint recovery, weight 10): docs/design.md §2–§3, measured in docs/ablation.md. Its
RGB conv starts at 0.1 × Kaiming, so the output tanh starts unsaturated, and its keypoints leave the
pose MLP through tanh(·/5), so they start spread over the face (docs/fidelity.md). That head also
reads 4 extra fakes per step whose keypoints are jittered by N(0, 0.1²), their term at weight 0.25,
and the real images are flipped: parts follow moved keypoints better (docs/ablation.md, fifth round).
"""

import ml_collections

from lkgan_jax.data.procedural import ATTRIBUTE_NAMES

VARIANTS = ("paper",)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant and variant not in VARIANTS:
        raise ValueError(f"unknown config variant {variant!r}; known: {', '.join(VARIANTS)}")
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.num_keypoints = 10
    c.model.z_dim = 64
    c.model.embed_dim = 32
    c.model.pose_depth = 4  # hidden layers of the keypoint MLP
    c.model.appearance_depth = 3  # hidden layers of the appearance / background MLPs
    # Keypoints = tanh(pose MLP / divisor). 5 (GANSeg: 20) starts them about 4× more spread, over the face; it
    # doubles move_follow and raises swap_ratio at equal judge_fd (docs/fidelity.md, two seeds).
    c.model.tanh_divisor = 5.0
    c.model.tau = 0.01
    # Conditioning-map options (docs/design.md §2; 0 = off, the paper's renderer): a Gaussian width floor in
    # pixel spacings of each layer, and the smallest layer side that sees keypoints at all.
    c.model.tau_floor_pixels = 1.0
    c.model.min_keypoint_size = 0
    # Learned per-part size: each part's Gaussian width learns a factor within [1/r, r] (1 = fixed τ).
    c.model.part_size_range = 1.0
    # False: no learned 4×4 start constant (the renderer starts from zeros): the layout must come from keypoints.
    c.model.learned_layout = False
    # Locality levers (docs/design.md §2 "The part's own footprint", "A layout from the keypoints"; all off here).
    # The part's footprint: "gaussian" (the paper's) | "learned" (GANSeg's linear cone, widened by the spread of
    # footprint_points sub-points per part that the pose MLP draws; the keypoint is their mean).
    c.model.part_footprint = "gaussian"
    c.model.footprint_points = 4  # sub-points per part of the learned footprint (GANSeg: 4)
    # True: parts and background write their embeddings through masks normalised to sum 1 at every pixel
    # (GANSeg's softmax part masks gate its part embeddings), instead of the raw footprints.
    c.model.part_mask_gating = False
    # F > 0: the renderer's 4×4 start adds a 1×1 conv of sin/cos(ω_f · (pixel − keypoint)), ω_f = 2^f·π/2,
    # f < F, for every keypoint (GANSeg starts from such an encoding of the keypoints at 1/4 of the side); 0: off.
    c.model.keypoint_layout_encoding = 0
    # Keypoint recovery (docs/design.md §3): a head on D regresses the fakes' keypoints and G and D both
    # minimise its L1 error, with this weight (0: off, no head; measured in docs/ablation.md).
    c.model.keypoint_recovery_weight = 10.0
    c.model.keypoint_head_init_scale = 1.0  # × the recovery head's Kaiming initial weights (0: starts at 0)
    # Initial scales (× Kaiming) of G's RGB conv and of each residual branch's last conv: small values start
    # the output tanh unsaturated and each block near its shortcut.
    c.model.g_rgb_init_scale = 0.1  # 1: 41 % of the initial output pixels beyond ±0.95 (docs/fidelity.md)
    c.model.g_residual_init_scale = 1.0
    # SPADE's normalisation: 0 = parameter-free BatchNorm (the authors'), G > 0 = parameter-free GroupNorm of
    # G groups (per sample: no running statistics, rendering as in training).
    c.model.g_norm_groups = 0
    # Narrow CPU widths: the SPADE convolutions at 16 and 32 px dominate the step's FLOPs.
    c.model.g_const_channels = 128
    c.model.g_channels = (128, 64, 32, 16)  # output width per resolution 4, 8, 16, 32
    c.model.spade_hidden = 16
    c.model.d_channels = (16, 32, 64, 128)  # 32 → 16 → 8 → 4 → 2
    c.model.d_dense = 128
    c.model.leaky_slope = 0.2
    c.model.bn_momentum = 0.9
    c.model.bn_epsilon = 1e-5
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)

    c.data = ml_collections.ConfigDict()
    c.data.source = "procedural"  # procedural | folder | arrayrecord | tfds
    c.data.path = ""  # image folder (source=folder) or ArrayRecord directory (source=arrayrecord)
    c.data.tfds_name = ""  # source=tfds: a dataset prepared in TFDS's array_record file format
    c.data.tfds_split = "train"  # its split (TFDS split syntax, e.g. "train[:90%]")
    c.data.image_key = "image"  # its image feature
    c.data.tfds_dir = ""  # its data dir ("": TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets)
    c.data.resolution = 32
    c.data.seed = 0
    c.data.random_flip = True  # horizontal flips of the real images, p = 0.5
    # A random resized crop of the real images (torchvision's RandomResizedCrop): area fraction and aspect
    # ratio ranges; (1, 1) and (1, 1) is off.
    c.data.random_crop_scale = (1.0, 1.0)
    c.data.random_crop_ratio = (1.0, 1.0)
    c.data.num_threads = 2
    c.data.prefetch = 4
    c.data.num_workers = 0

    c.train = ml_collections.ConfigDict()
    c.train.steps = 3000
    c.train.batch_size = 16
    c.train.lr_g = 1e-4
    c.train.lr_d = 4e-4
    c.train.beta1 = 0.5
    c.train.beta2 = 0.9
    c.train.adam_eps = 1e-8
    c.train.penalty = "r1"  # r1: γ/2·‖∇D‖² × reg_every | gp: weight·(‖∇D‖ − 1)² (the authors')
    c.train.r1_gamma = 1.0  # 10 at paper size; small images need a weaker penalty
    c.train.gp_weight = 10.0
    c.train.reg_every = 16
    c.train.lazy_reg_correction = False  # D's lr and betas × / ^ k/(k+1) for reg_every k (StyleGAN2)
    # Keypoint jitter (docs/design.md §3): σ of an independent N(0, σ²) offset of every keypoint of the
    # training fakes, in normalised units (0: off).
    c.train.keypoint_jitter = 0.0
    # Recovery jitter (docs/design.md §3): N extra fakes per step whose keypoints each move by N(0, σ²);
    # only the keypoint-recovery term sees them (needs model.keypoint_recovery_weight > 0; 0: off).
    c.train.recovery_jitter = 0.1
    c.train.recovery_jitter_batch = 4
    c.train.recovery_jitter_weight = 0.25  # × the jittered fakes' recovery term, relative to the ordinary one's
    # Equivariance (docs/design.md §3; after DragGAN's motion supervision): copies of round(fraction·B) of G's
    # fakes, each with one keypoint moved by `shift` output pixels along ±x or ±y, are rendered in G's batch;
    # the L1 between the moved image's patch×patch window at the new position and the original's at the old
    # one is added to L_G with this weight (0: off), logged as g_equivariance.
    c.train.equivariance_weight = 0.0
    c.train.equivariance_fraction = 0.25
    c.train.equivariance_shift = 3.0  # output pixels (the locality metric's eval.locality_move_px)
    c.train.equivariance_patch = 7  # window side in output pixels
    # > 0: also an L1 to the original outside the moved part (pixels farther than the radius, Chebyshev, in output
    # pixels, from both positions), with this weight (DragGAN's mask term), logged as g_equivariance_outside.
    c.train.equivariance_outside_weight = 0.0
    c.train.equivariance_outside_radius = 8.0
    c.train.ema_decay = 0.999
    c.train.ema_warmup = True  # decay_t = min(decay, (1 + t) / (10 + t))
    # The EMA generator's own BatchNorm statistics (docs/design.md §3): averaged over this many fresh batches
    # in train mode before every checkpoint, sample grid and evaluation (0: it renders with G's statistics).
    c.train.ema_stats_batches = 8
    c.train.ema_stats_batch_size = 64
    c.train.fast_compile = False  # True: skip XLA's expensive passes (faster compile, slower steps)
    c.train.log_every = 50
    # Log the gradient norm of each loss term (grad_norm/{d,g}/TERM) on the logged penalty steps: one more executable.
    c.train.term_grad_norms = True
    c.train.checkpoint_every = 500
    c.train.sample_every = 500
    c.train.keep_checkpoints = 3
    c.train.num_samples = 16  # images in each sample grid
    c.train.sample_seed = 1234
    c.train.sample_upscale = 4  # nearest-neighbour upscaling of saved sample tiles
    # Evaluation during training on the in-memory EMA generator (0: never). Any metric of `lkgan
    # evaluate` but landmarks; fid, kid and fid_interp need eval.inception_weights.
    c.train.eval_every = 1000
    c.train.eval_metrics = "cpd,judge"  # comma-separated
    c.train.eval_num_samples = 1000  # generated images per FID/KID/FID_interp during training
    c.train.eval_cpd_pairs = 100  # CPD pairs during training (eval.cpd_pairs for `lkgan evaluate`)
    c.train.eval_locality_pairs = 50  # locality pairs during training (eval.locality_pairs for `lkgan evaluate`)
    c.train.profile_steps = ""  # "A,B": a jax.profiler trace of steps A..B into the work dir

    # Keypoint detector trained on generated pairs (`lkgan detect`, docs/design.md §8).
    c.detect = ml_collections.ConfigDict()
    c.detect.name = "detector"  # trained into RUN/NAME/ (a second detector of another seed evaluates editors)
    c.detect.steps = 2000
    c.detect.batch_size = 32
    c.detect.lr = 3e-4
    c.detect.input_size = 32  # images are resized to this side first
    c.detect.down_channels = (32, 64, 128)  # residual down blocks: 32 → 16 → 8 → 4
    c.detect.up_channels = (64, 32)  # bilinear up blocks: 4 → 8 → 16 (heatmap side)
    c.detect.heatmap_weight = 0.0  # > 0 adds an MSE between softmax heatmaps and the τ-Gaussians
    c.detect.seed = 0
    c.detect.log_every = 100
    c.detect.checkpoint_every = 500
    c.detect.keep_checkpoints = 2
    c.detect.fast_compile = False
    c.detect.eval_every = 1000  # the landmark metric on the run's (labelled) data while training (0: never)
    c.detect.eval_metrics = "landmarks"  # landmarks and/or locality (with move_follow from this detector)
    c.detect.profile_steps = ""

    # Learned attribute editors on the run's frozen generator (`lkgan edit-train`, docs/design.md §14).
    c.edit = ml_collections.ConfigDict()
    c.edit.name = "mapper"  # trained into RUN/editors/NAME/
    c.edit.editor = "mapper"  # mapper (Latent-to-Latent) | matrix (a direction per attribute)
    c.edit.attributes = ",".join(ATTRIBUTE_NAMES)  # comma-separated procedural attribute names
    c.edit.judge_weights = ""  # judge.msgpack of the training judge (`lkgan judge train`)
    c.edit.mapper_depth = 2  # tanh hidden layers, each as wide as the flat latent
    c.edit.matrix_blocks = "positions,embeddings,background"  # the blocks the matrix may edit
    c.edit.steps = 2000
    c.edit.batch_size = 16
    c.edit.lr = 1e-4
    c.edit.beta1 = 0.5
    c.edit.beta2 = 0.99
    c.edit.delta_max = 1.5  # requested changes lie in [-delta_max, delta_max] standard deviations
    c.edit.edit_probability = 0.5  # chance that each attribute is edited in a training sample
    c.edit.geometry_probability = 0.25  # share of samples that may edit head_scale, rotation, x or y
    c.edit.attribute_weight = 1.0
    c.edit.keypoint_weight = 1.0  # × the gradient-norm balance measured at initialisation (0: off)
    c.edit.balance_perturbation = 0.1  # latent std units: where that balance is measured
    c.edit.num_statistics = 4096  # generated latents whose mean and std standardise the flat latent
    c.edit.cycle_weight = 0.5  # mapper only
    c.edit.identity_weight = 0.5  # mapper only
    c.edit.neighbourhood_weight = 0.5  # mapper only
    c.edit.group_lasso_weight = 0.0  # matrix only
    c.edit.adversarial_weight = 0.0  # > 0: the run's own discriminator scores the edited images
    c.edit.seed = 0
    c.edit.log_every = 100
    c.edit.checkpoint_every = 500
    c.edit.keep_checkpoints = 2
    c.edit.fast_compile = False
    c.edit.profile_steps = ""

    # Evaluation (`lkgan evaluate`, and during training; docs/design.md §7).
    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 64  # images per jitted call (the last batch is padded)
    c.eval.seed = 0  # first seed of the generated FID/KID samples; also seeds KID subsets, splits, α draws
    c.eval.num_samples = 5000  # generated images for FID, KID and each FID_interp
    c.eval.num_real = 5000  # real images for the reference statistics
    c.eval.inception_batch_size = 50  # images per Inception call
    c.eval.inception_weights = ""  # local path of pytorch-fid's pt_inception-2015-12-05-6726825d.pth
    c.eval.kid_subsets = 100
    c.eval.kid_subset_size = 1000
    c.eval.interp_seed = 1_000_000  # FID_interp pairs: seeds s + 2i and s + 2i + 1
    c.eval.cpd_pairs = 1000  # CPD: 2 × 1000 samples in pairs
    c.eval.cpd_seed = 2_000_000
    # Locality (docs/design.md §7.6): part swaps and keypoint moves on pairs of seeds s + 2i, s + 2i + 1.
    c.eval.locality_pairs = 200
    c.eval.locality_seed = 3_000_000
    c.eval.locality_radii = (0.15, 0.3)  # swap_ratio disc radii (normalised units: 1 = half the image side)
    c.eval.locality_move_px = 3  # move_follow: keypoint move in whole pixels along one axis
    c.eval.locality_window = 0.15  # move_follow_px: half-width (normalised) of the window at the new position
    c.eval.landmarks_num_train = 1000  # labelled images for fitting the regression
    c.eval.landmarks_num_test = 500  # labelled images it is scored on
    c.eval.landmarks_test_fraction = 0.2  # image folders: share of images (seeded shuffle) for the test split
    c.eval.eye_landmarks = (0, 1)  # inter-ocular distance between these landmarks (procedural faces: eyes)
    c.eval.judge_weights = ""  # judge.msgpack from `lkgan judge train` (metric `judge`; "": the judge shipped with lkgan_jax)
    c.eval.judge_num_samples = 2000  # generated and real images per fidelity score (judge_fd, precision/recall, SWD)
    c.eval.judge_neighbours = 3  # k of the k-NN balls of judge_precision / judge_recall
    c.eval.swd_min_side = 16  # SWD: the coarsest Laplacian-pyramid level
    c.eval.swd_patches_per_image = 64  # SWD: random 7×7 patches per image and level
    # Editing (docs/design.md §14): editors measured with a second judge (eval.judge_weights) and detector.
    c.eval.editing_detector = ""  # name of the evaluation detector under RUN/ (`lkgan detect --config.detect.name=...`)
    c.eval.editing_num_samples = 200  # latents edited per attribute
    c.eval.editing_seed = 4_000_000  # latents of seeds s … s + N − 1; also seeds the requested changes
    c.eval.editing_region_radius = 0.25  # outside_share: disc radius around a local attribute's landmarks (normalised)
    c.eval.editing_num_fit = 4096  # latents the least-squares baseline is fitted on
    c.eval.editing_ridge = 0.01  # its ridge λ (standardised latents; keeps near-constant coordinates out)
    c.eval.editing_num_judge_test = 1000  # held-out real faces that score each judge (the ceiling)
    c.eval.generated_pairs = 512  # held-out generated pairs for the detector-vs-generator sanity error

    # The judge of image fidelity on procedural faces (`lkgan judge train`, docs/design.md §7.7).
    c.judge = ml_collections.ConfigDict()
    c.judge.steps = 3000
    c.judge.batch_size = 64
    c.judge.lr = 1e-3
    c.judge.input_size = 32  # faces are rendered (and generated images resized) to this side
    c.judge.channels = (32, 64, 128)  # residual down blocks
    c.judge.feature_dim = 128  # penultimate features: the space of judge_fd
    c.judge.attribute_weight = 1.0  # loss = landmark MSE + weight · standardised attribute MSE
    c.judge.num_standardise = 5000  # training faces whose attribute mean and std standardise the targets
    c.judge.num_test = 1000  # held-out test-split faces it is scored on
    c.judge.seed = 0
    c.judge.log_every = 100
    c.judge.checkpoint_every = 1000
    c.judge.keep_checkpoints = 2
    c.judge.eval_every = 1000  # held-out scores while training (0: only at the end)
    c.judge.fast_compile = False
    c.judge.profile_steps = ""

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all remaining devices
    c.mesh.fsdp = 1
    c.mesh.fsdp_min_bytes = 4 * 2**20  # parameters smaller than this stay replicated

    if variant == "paper":  # the paper's renderer and objective (the module docstring)
        c.model.tau_floor_pixels = 0.0
        c.model.learned_layout = True
        c.model.keypoint_recovery_weight = 0.0
        c.train.recovery_jitter = 0.0
        c.train.recovery_jitter_batch = 0
        c.data.random_flip = False
        c.model.g_rgb_init_scale = 1.0
        c.model.tanh_divisor = 20.0
    return c
