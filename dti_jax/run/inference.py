"""What a method's inference module hands to `dti_jax.infer`: a restored state and the
jitted function that applies it to a batch of new images."""

import dataclasses
from typing import Any, Callable

import ml_collections


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A trained workdir ready for new images.

  ``apply(state, images)`` is the method's jitted forward pass; ``image_shape`` the
  [H, W, C] its reader produces (None where images keep their own shape).
  """
  config: ml_collections.ConfigDict
  state: Any
  apply: Callable[..., Any]
  image_shape: tuple[int, int, int] | None = None
