"""Imports point downward only: entry points -> methods -> run -> shared layers -> data.

A method never imports another method, the run package never imports (or names, for
importlib) a method, and the shared layers import neither.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = sorted(path.name for path in (REPO / "dti_jax" / "methods").iterdir()
                 if (path / "trainer.py").exists())
ENTRY_POINTS = ("dti_jax.main", "dti_jax.infer")
SHARED = ("dti_jax/transforms", "dti_jax/ops", "dti_jax/nets", "dti_jax/metrics",
          "dti_jax/viz", "dti_jax/interop")
_ABOVE_SHARED = ("dti_jax.run", "dti_jax.methods", *ENTRY_POINTS, "data_pipelines",
                 "configs")
# Rooms each room may NOT import (project-internal names only).
FORBIDDEN = {
    **{room: _ABOVE_SHARED for room in SHARED},
    "dti_jax/transforms": (*_ABOVE_SHARED, "dti_jax.nets", "dti_jax.metrics", "dti_jax.viz"),
    "dti_jax/ops": (*_ABOVE_SHARED, "dti_jax.nets", "dti_jax.metrics", "dti_jax.viz"),
    "dti_jax/run": ("dti_jax.methods", *ENTRY_POINTS, "configs"),
    **{f"dti_jax/methods/{name}": (*ENTRY_POINTS, "configs", "dti_jax.methods", *(
        f"dti_jax.methods.{other}" for other in METHODS if other != name))
       for name in METHODS},
    "data_pipelines": ("dti_jax", "jax", "flax", "configs"),
}


def _allowed(room: str, name: str) -> bool:
  """A method may import its own folder."""
  return room.startswith("dti_jax/methods/") and name.startswith(
      room.replace("/", ".") + ".") or name == room.replace("/", ".")


def _imports(path):
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_every_method_folder_is_checked():
  assert METHODS == ["deepcluster", "dlp", "dti_clustering", "dti_sprites", "unsup_parts"]


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_no_upward_or_sideways_imports(room):
  files = sorted((REPO / room).rglob("*.py"))
  assert files, room
  for path in files:
    for name in _imports(path):
      if _allowed(room, name):
        continue
      for banned in FORBIDDEN[room]:
        assert not (name == banned or name.startswith(banned + ".")), \
            f"{path.relative_to(REPO)} imports {name}"


def test_the_run_package_names_no_method():
  """Not even as a string for importlib: the loop receives the method from its caller."""
  for path in sorted((REPO / "dti_jax" / "run").rglob("*.py")):
    text = path.read_text()
    for name in METHODS:
      assert f"dti_jax.methods.{name}" not in text, f"{path.relative_to(REPO)} names {name}"


def test_the_layering_check_catches_a_method_importing_another(tmp_path):
  """The rule above fails on a sideways import (checked on a file the test writes)."""
  bad = tmp_path / "bad.py"
  bad.write_text("from dti_jax.methods.dti_clustering import trainer\n")
  banned = FORBIDDEN["dti_jax/methods/dti_sprites"]
  assert any(name.startswith(b) for name in _imports(bad) for b in banned
             if not _allowed("dti_jax/methods/dti_sprites", name))


def test_every_registered_method_assembles_with_its_hooks():
  """Each entry of the method table gives every member of the protocol; the hooks are
  there exactly where a method defines them."""
  from dti_jax import methods  # pylint: disable=import-outside-toplevel
  from dti_jax.run import method as method_lib  # pylint: disable=import-outside-toplevel
  hooks = {"after_step_function": method_lib.AfterStepHook,
           "epoch_start_function": method_lib.EpochStartHook,
           "load_source": method_lib.DataHook,
           "given_weights": method_lib.GivenWeightsHook}
  expected = {"dti_clustering": {"after_step_function"}, "dti_sprites": {"after_step_function"},
              "deepcluster": {"epoch_start_function"},
              "linear_probe": {"epoch_start_function", "load_source"},
              "voc_classification": {"epoch_start_function", "load_source"},
              "retrieval": {"load_source"},
              "dlp": {"given_weights"}, "unsup_parts": set()}
  assert set(methods.METHODS) == set(expected)
  for name, wanted in expected.items():
    method = methods.get(name)
    assert isinstance(method, method_lib.Method), name
    assert {hook for hook, protocol in hooks.items() if isinstance(method, protocol)} == wanted
  with pytest.raises(TypeError, match="lacks create_evaluator, final_evaluation"):
    method_lib.assemble("broken", methods.importlib.import_module(
        "dti_jax.methods.dlp.trainer"), object())
