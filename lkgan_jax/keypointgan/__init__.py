"""KeypointGAN (Jakab et al., CVPR 2020): keypoints learned through a rendered-skeleton bottleneck and an unpaired pose prior."""
