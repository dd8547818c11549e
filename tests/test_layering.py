"""Imports point downward only: main -> trainers -> models -> nets -> transforms."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Rooms each room may NOT import (project-internal names only).
FORBIDDEN = {
    "dti_jax/transforms": ("dti_jax.trainers", "dti_jax.models", "dti_jax.nets", "dti_jax.main",
                           "dti_jax.metrics", "dti_jax.viz", "data_pipelines", "configs"),
    "dti_jax/ops": ("dti_jax.trainers", "dti_jax.models", "dti_jax.nets", "dti_jax.main",
                    "dti_jax.metrics", "dti_jax.viz", "data_pipelines", "configs"),
    "dti_jax/nets": ("dti_jax.trainers", "dti_jax.models", "dti_jax.main", "data_pipelines",
                     "configs"),
    "dti_jax/models": ("dti_jax.trainers", "dti_jax.main", "data_pipelines", "configs"),
    "dti_jax/metrics": ("dti_jax.trainers", "dti_jax.models", "dti_jax.nets", "dti_jax.main",
                        "data_pipelines", "configs"),
    "dti_jax/viz": ("dti_jax.trainers", "dti_jax.models", "dti_jax.main", "data_pipelines",
                    "configs"),
    "dti_jax/trainers": ("dti_jax.main", "configs"),
    "data_pipelines": ("dti_jax", "jax", "flax", "configs"),
}


def _imports(path):
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_no_upward_imports(room):
  files = sorted((REPO / room).rglob("*.py"))
  assert files, room
  for path in files:
    for name in _imports(path):
      for banned in FORBIDDEN[room]:
        assert not (name == banned or name.startswith(banned + ".")), \
            f"{path.relative_to(REPO)} imports {name}"
