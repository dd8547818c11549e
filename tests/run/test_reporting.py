"""The ETA adds each remaining stage's steps at that stage's own time per step."""

from dti_jax.run import reporting


def test_eta_covers_the_remaining_stages_at_their_own_speed():
  progress = reporting.Progress(total_steps=1000, first_step=0)
  # identity for steps 0..99, affine 100..499, tps 500..999; tps timed at 0.5 s/step.
  progress.set_stage_costs([(0, "identity"), (100, "affine"), (500, "tps")], {"tps": 0.5})
  # In the identity stage at 0.01 s/step; affine not timed: the live speed stands in.
  assert progress.remaining_seconds(40, "identity", 0.01) == 60 * 0.01 + 400 * 0.01 + 500 * 0.5
  # Later, in the affine stage at 0.1 s/step, the identity stage is behind.
  assert progress.remaining_seconds(300, "affine", 0.1) == 200 * 0.1 + 500 * 0.5
  # In the last stage its live speed replaces the timed one.
  assert progress.remaining_seconds(900, "tps", 0.4) == 100 * 0.4


def test_without_stages_the_eta_extrapolates_the_current_speed():
  progress = reporting.Progress(total_steps=200, first_step=50)
  assert progress.remaining_seconds(50, None, 0.2) == 150 * 0.2
