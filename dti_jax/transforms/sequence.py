"""Transformation sequences: parsing, static description and application.

A sequence such as "identity_affine_morpho_tps" is applied to a prototype in
the order written (affine first, then morpho, then TPS). Under the curriculum
only the first `n_active` modules are used; the rest are skipped, not applied
with zero parameters, because TPS and morpho are not identities at zero.
"""

from collections.abc import Sequence
import dataclasses

import jax

from dti_jax.transforms.affine import invert_affine_params, warp_affine
from dti_jax.transforms.color import apply_color, invert_color_params
from dti_jax.transforms.morphological import apply_morpho
from dti_jax.transforms.projective import invert_projective_params, warp_projective
from dti_jax.transforms.sampling import PADDING_MODES
from dti_jax.transforms.tps import warp_tps

MODULE_NAMES = ("identity", "color", "affine", "projective", "morpho", "tps")
MODULE_ALIASES = {
    "id": "identity",
    "col": "color",
    "aff": "affine",
    "proj": "projective",
    "homography": "projective",
    "thinplatespline": "tps",
    "morphological": "morpho",
}
SPATIAL_MODULES = frozenset({"affine", "projective", "tps"})


def _canonical_name(token: str) -> str:
  if token in MODULE_NAMES:
    return token
  if token in MODULE_ALIASES:
    return MODULE_ALIASES[token]
  valid = ", ".join(MODULE_NAMES + tuple(MODULE_ALIASES))
  raise ValueError(f"Unknown transformation {token!r}; valid names: {valid}.")


def parse_sequence(sequence: str) -> tuple[str, ...]:
  """Splits an '_'-joined sequence string into canonical module names.

  Args:
    sequence: e.g. "id_aff_morpho_tps".

  Returns:
    Canonical names, e.g. ("identity", "affine", "morpho", "tps").

  Raises:
    ValueError: naming the first unknown token and listing the valid names.
  """
  return tuple(_canonical_name(token) for token in sequence.split("_"))


@dataclasses.dataclass(frozen=True)
class TransformSpec:
  """Static description of a transformation sequence (hashable, jit-static).

  Attributes:
    modules: canonical module names in application order (aliases are
      accepted and canonicalised).
    channels: C, the number of image channels (sets the colour module size).
    grid_size: g, TPS control points per side.
    kernel_size: k, morphological window size (odd).
    padding_mode: 'border' or 'zeros', for every spatial module.
  """

  modules: tuple[str, ...]
  channels: int
  grid_size: int = 4
  kernel_size: int = 7
  padding_mode: str = "border"

  def __post_init__(self):
    # Frozen dataclass: normalise through object.__setattr__. A list becomes
    # a tuple so the spec stays hashable.
    canonical = tuple(_canonical_name(name) for name in self.modules)
    object.__setattr__(self, "modules", canonical)
    if self.padding_mode not in PADDING_MODES:
      raise ValueError(
          f"Unknown padding_mode {self.padding_mode!r}; "
          f"expected one of {PADDING_MODES}."
      )
    if "morpho" in canonical and self.kernel_size % 2 != 1:
      raise ValueError(f"kernel_size must be odd for morpho, got {self.kernel_size}.")

  def param_sizes(self) -> tuple[int, ...]:
    """Number of parameters P_m of each module, in sequence order."""
    sizes = {
        "identity": 0,
        "color": 2 * self.channels,
        "affine": 6,
        "projective": 9,
        "tps": 2 * self.grid_size**2,
        "morpho": 1 + self.kernel_size**2,
    }
    return tuple(sizes[name] for name in self.modules)


def _check_call(params: Sequence[jax.Array], spec: TransformSpec, n_active: int):
  if len(params) != len(spec.modules):
    raise ValueError(
        f"Got {len(params)} parameter arrays for {len(spec.modules)} modules "
        f"{spec.modules}."
    )
  if not 0 <= n_active <= len(spec.modules):
    raise ValueError(f"n_active={n_active} outside [0, {len(spec.modules)}].")


def _apply_module(
    name: str, image: jax.Array, beta: jax.Array, spec: TransformSpec
) -> jax.Array:
  if name == "identity":
    return image
  if name == "color":
    return apply_color(image, beta)
  if name == "affine":
    return warp_affine(image, beta, padding_mode=spec.padding_mode)
  if name == "projective":
    return warp_projective(image, beta, padding_mode=spec.padding_mode)
  if name == "tps":
    return warp_tps(
        image, beta, grid_size=spec.grid_size, padding_mode=spec.padding_mode
    )
  if name == "morpho":
    return apply_morpho(image, beta, kernel_size=spec.kernel_size)
  raise ValueError(f"Unknown transformation {name!r}.")


def apply_sequence(
    image: jax.Array,
    params: Sequence[jax.Array],
    spec: TransformSpec,
    n_active: int,
    *,
    spatial_only: bool = False,
) -> jax.Array:
  """Applies the first `n_active` modules of the sequence to one image.

  Args:
    image: [H, W, C] image (a prototype, or a GMM sigma map).
    params: one [P_m] array per module, in `spec.modules` order (identity
      takes a [0]-shaped array). Entries at index >= n_active are ignored.
    spec: the static sequence description.
    n_active: static number of active modules; later modules are skipped.
    spatial_only: skip colour and morpho (the GMM warps its sigma maps with
      the spatial modules only).

  Returns:
    [H, W, C] transformed image.
  """
  _check_call(params, spec, n_active)
  for name, beta in zip(spec.modules[:n_active], params[:n_active]):
    if spatial_only and name not in SPATIAL_MODULES:
      continue
    image = _apply_module(name, image, beta, spec)
  return image


def warp_prototypes(
    prototypes: jax.Array,
    params: Sequence[jax.Array],
    spec: TransformSpec,
    n_active: int,
    *,
    spatial_only: bool = False,
) -> jax.Array:
  """Warps every prototype with every image's parameters.

  Args:
    prototypes: [K, H, W, C] prototypes.
    params: one [B, K, P_m] array per module, in `spec.modules` order.
    spec: the static sequence description.
    n_active: static number of active modules.
    spatial_only: skip colour and morpho.

  Returns:
    [B, K, H, W, C] transformed prototypes: entry (b, k) is prototype k
    warped with params[m][b, k].
  """
  _check_call(params, spec, n_active)

  def warp_one(prototype, prototype_params):
    return apply_sequence(
        prototype, prototype_params, spec, n_active, spatial_only=spatial_only
    )

  over_prototypes = jax.vmap(warp_one, in_axes=(0, 0))
  over_batch = jax.vmap(over_prototypes, in_axes=(None, 0))
  return over_batch(prototypes, tuple(params))


def invert_sequence(
    image: jax.Array,
    params: Sequence[jax.Array],
    spec: TransformSpec,
    n_active: int,
) -> jax.Array:
  """Approximately undoes the sequence on one image, for visualisation only.

  Faithful to the original's quirks: colour, affine and projective apply
  their inverse maps; identity, TPS and morpho return their input unchanged
  (no inverse exists); and the inverses are applied in the FORWARD order,
  not reversed, so the result is an exact inverse only when at most one
  invertible module is active.

  Args:
    image: [H, W, C] image.
    params: one [P_m] array per module, in `spec.modules` order.
    spec: the static sequence description.
    n_active: static number of active modules.

  Returns:
    [H, W, C] image.
  """
  _check_call(params, spec, n_active)
  inverse_params = {
      "color": invert_color_params,
      "affine": invert_affine_params,
      "projective": invert_projective_params,
  }
  for name, beta in zip(spec.modules[:n_active], params[:n_active]):
    if name in inverse_params:
      image = _apply_module(name, image, inverse_params[name](beta), spec)
  return image
