"""Differentiable image transformations of DTI-Clustering, one image at a time.

Images are [H, W, C] float32; lift with `jax.vmap` (see `warp_prototypes`).
"""

from dti_jax.transforms.affine import affine_grid, invert_affine_params, warp_affine
from dti_jax.transforms.color import apply_color, invert_color_params
from dti_jax.transforms.morphological import apply_morpho
from dti_jax.transforms.projective import invert_projective_params, warp_projective
from dti_jax.transforms.sampling import grid_sample
from dti_jax.transforms.sequence import (
    SPATIAL_MODULES,
    TransformSpec,
    apply_sequence,
    invert_sequence,
    parse_sequence,
    warp_prototypes,
)
from dti_jax.transforms.tps import control_points, tps_basis, warp_tps

__all__ = [
    "SPATIAL_MODULES",
    "TransformSpec",
    "affine_grid",
    "apply_color",
    "apply_morpho",
    "apply_sequence",
    "control_points",
    "grid_sample",
    "invert_affine_params",
    "invert_color_params",
    "invert_projective_params",
    "invert_sequence",
    "parse_sequence",
    "tps_basis",
    "warp_affine",
    "warp_projective",
    "warp_prototypes",
    "warp_tps",
]
