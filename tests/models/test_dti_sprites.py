import itertools

import jax

import jax.numpy as jnp
import numpy as np

from dti_jax.methods.dti_sprites import model as dti_sprites
from dti_jax.methods.dti_sprites import decomposition
from dti_jax.methods.dti_sprites import compositing


def _sprites(num_sprites=4, size=8, seed=0):
  """Distinct solid squares at distinct places: colours [K, H, W, 3], alphas [K, H, W, 1]."""
  rng = np.random.default_rng(seed)
  colours = np.zeros((num_sprites, size, size, 3), np.float32)
  alphas = np.zeros((num_sprites, size, size, 1), np.float32)
  for k in range(num_sprites):
    top, left = divmod(k, 2)
    alphas[k, 4 * top:4 * top + 3, 4 * left:4 * left + 3] = 1
    colours[k] = rng.random(3)
  return colours, alphas


def test_greedy_recovers_the_sprites_that_made_the_image():
  colours, alphas = _sprites()
  layers = 2
  colours_l = np.broadcast_to(colours, (layers,) + colours.shape)
  alphas_l = np.broadcast_to(alphas, (layers,) + alphas.shape)
  background = np.full((8, 8, 3), 0.2, np.float32)
  occlusion = compositing.fixed_occlusion(layers + 1)
  for truth in itertools.permutations(range(4), layers):
    onehot = np.eye(4, dtype=np.float32)[list(truth)]
    image = dti_sprites.compose_selection(onehot, colours_l, alphas_l, background, occlusion)
    chosen = dti_sprites.greedy_selection(
        image, colours_l, alphas_l, background, occlusion, iterations=2,
        candidates=jnp.ones(4, bool), penalties=jnp.zeros(4))
    assert sorted(np.argmax(chosen, axis=1).tolist()) == sorted(truth)
    np.testing.assert_allclose(
        dti_sprites.compose_selection(chosen, colours_l, alphas_l, background, occlusion),
        image, atol=1e-6)


def test_candidates_and_empty_penalty():
  colours, alphas = _sprites()
  colours[3], alphas[3] = 0, 0           # the empty sprite, last index
  colours_l, alphas_l = colours[None], alphas[None]
  background = np.zeros((8, 8, 3), np.float32)
  occlusion = compositing.fixed_occlusion(2)
  colours[0] = 0  # a black sprite on black explains the image as well as the empty one
  colours_l = colours[None]
  image = background
  tie = dti_sprites.greedy_selection(image, colours_l, alphas_l, background, occlusion,
                                     iterations=1, candidates=jnp.ones(4, bool),
                                     penalties=jnp.zeros(4))
  assert int(np.argmax(tie[0])) == 0  # ties go to the first index
  penalties = jnp.array([1e-4, 1e-4, 1e-4, 0.0])  # lambda_empty on every non-empty sprite
  chosen = dti_sprites.greedy_selection(image, colours_l, alphas_l, background, occlusion,
                                        iterations=1, candidates=jnp.ones(4, bool),
                                        penalties=penalties)
  assert int(np.argmax(chosen[0])) == 3
  frozen = jnp.array([True, True, True, False])  # the empty sprite is not a candidate
  chosen = dti_sprites.greedy_selection(image, colours_l, alphas_l, background, occlusion,
                                        iterations=1, candidates=frozen, penalties=penalties)
  assert int(np.argmax(chosen[0])) != 3


def test_sprite_color_clamps_colour_and_passes_mask_through():
  stack = jnp.concatenate([jnp.full((2, 2, 3), 0.9), jnp.full((2, 2, 1), 1.7),
                           jnp.ones((2, 2, 1))], axis=-1)
  beta = jnp.array([0.5, 0.0, 0.0, -1.0, 0.0, 0.0])  # red x1.5 -> 1.35, green -0.1
  out = np.asarray(dti_sprites.sprite_color(stack, beta, 3))
  np.testing.assert_allclose(out[0, 0], [1.0035, -0.001, 0.9, 1.7, 1.0], rtol=1e-5, atol=1e-6)


def test_place_sprite_at_init_puts_the_sprite_on_the_centre_half_of_the_canvas():
  stack = jnp.concatenate([jnp.full((4, 4, 3), 0.9), jnp.ones((4, 4, 2))], axis=-1)
  out = np.asarray(dti_sprites.place_sprite(stack, jnp.zeros(6), jnp.zeros(3), 8, 8, 3))
  inside = np.zeros((8, 8), bool)
  inside[2:6, 2:6] = True
  np.testing.assert_allclose(out[inside], np.tile([0.9, 0.9, 0.9, 1, 1], (16, 1)), atol=1e-6)
  np.testing.assert_allclose(out[~inside], 0.0, atol=1e-6)


def test_init_and_stack_with_the_empty_sprite_last():
  sprites = dti_sprites.init_sprites(3, 5, 5, 3, mask_std=1.0)
  np.testing.assert_array_equal(sprites["prototypes"], np.float32(0.9))
  np.testing.assert_allclose(sprites["masks"][1, 2, 2, 0], 1.0)          # odd size: peak 1
  np.testing.assert_allclose(sprites["masks"][0, 0, 2, 0], np.exp(-0.5 * 4), rtol=1e-6)
  sprites["masks"] = sprites["masks"].at[0, 0, 0, 0].set(1.5)
  train = dti_sprites.sprite_stack(sprites, add_empty=True, train=True)
  evaluation = dti_sprites.sprite_stack(sprites, add_empty=True, train=False)
  assert train.shape == (4, 5, 5, 5)
  assert float(train[0, 0, 0, 3]) == 1.5                                  # raw in training
  np.testing.assert_allclose(evaluation[0, 0, 0, 3], 1.005, rtol=1e-6)   # clamped in eval
  np.testing.assert_array_equal(train[3], 0.0)                           # empty sprite
  np.testing.assert_array_equal(train[:3, ..., 4], 1.0)                  # noise canvas


def test_noise_lands_only_inside_the_canvas():
  alphas = jnp.full((1, 4, 4, 1), 0.5)
  canvas = jnp.zeros((1, 4, 4, 1)).at[0, 1:3, 1:3].set(1.0)
  uniform = jnp.full((1, 4, 4, 1), 1.0)   # 2u - 1 = 1: +eta inside
  noisy = np.asarray(dti_sprites.inject_noise(alphas, canvas, uniform, 0.4))
  np.testing.assert_allclose(noisy[0, 1:3, 1:3], 0.9, atol=1e-6)
  np.testing.assert_allclose(noisy[0, 0], 0.5, atol=1e-6)


def _tiny_spec(**overrides):
  fields = dict(height=8, width=8, channels=3, n_sprites=3, add_empty=False, n_layers=2,
                n_backgrounds=0, sprite_modules=("identity",), layer_transform=True,
                bkg_modules=("color",), predict_occlusion=False, selection="greedy")
  fields.update(overrides)
  return decomposition.SpritesSpec(**fields)


def _zero_heads(batch, layers):
  return {"layer/color": jnp.zeros((batch, layers, 6)),
          "layer/position": jnp.zeros((batch, layers, 3))}


def test_decompose_selects_and_backpropagates_to_the_chosen_sprite_only():
  sprites = dti_sprites.init_sprites(3, 4, 4, 3, mask_std=100.0)   # masks ~1 everywhere
  sprites["prototypes"] = sprites["prototypes"] * jnp.array([0.2, 0.5, 0.8])[:, None, None, None]
  spec, stage = _tiny_spec(), decomposition.Stage(1, 1, False)
  stacks = dti_sprites.sprite_stack(sprites, add_empty=False, train=False)
  # Targets: sprite 1 then sprite 2 placed at init (centre half of the canvas) on black.
  targets = np.zeros((2, 8, 8, 3), np.float32)
  targets[0, 2:6, 2:6] = np.asarray(stacks[1, 0, 0, :3])
  targets[1, 2:6, 2:6] = np.asarray(stacks[2, 0, 0, :3])
  # Jitted: one compilation each instead of one per operation.
  out = jax.jit(lambda params, images: decomposition.decompose(
      spec, stage, params, _zero_heads(2, 2), images, train=False))(
          {"sprites": sprites}, jnp.asarray(targets))
  np.testing.assert_array_equal(np.argmax(out["selection"][:, 0], axis=1), [1, 2])
  np.testing.assert_allclose(out["reconstruction"], targets, atol=2e-3)

  def loss(prototypes):
    params = {"sprites": dict(sprites, prototypes=prototypes)}
    out = decomposition.decompose(spec, stage, params, _zero_heads(2, 2),
                                  jnp.asarray(targets) + 0.05, train=False)
    return jnp.mean((out["reconstruction"] - targets - 0.05) ** 2)
  grads = np.asarray(jax.jit(jax.grad(loss))(sprites["prototypes"]))
  assert np.abs(grads[0]).max() == 0.0 and np.abs(grads[1]).max() > 0 and np.abs(grads[2]).max() > 0
  # Frozen sprites get no gradient at all.
  frozen = decomposition.Stage(1, 1, True)
  grads = jax.jit(jax.grad(lambda p: jnp.mean(decomposition.decompose(
      spec, frozen, {"sprites": dict(sprites, prototypes=p)}, _zero_heads(2, 2),
      jnp.asarray(targets), train=False)["errors"])))(sprites["prototypes"])
  assert np.abs(np.asarray(grads)).max() == 0.0


def test_empty_sprite_leaves_the_image_unchanged():
  """An all-empty composition reconstructs the background exactly, and adding the empty
  sprite as a layer over any composite changes nothing."""
  sprites = dti_sprites.init_sprites(2, 4, 4, 3, mask_std=2.0)
  stacks = dti_sprites.sprite_stack(sprites, add_empty=True, train=False)
  empty = stacks[-1]
  placed = dti_sprites.place_sprite(empty, jnp.full((6,), 0.3), jnp.array([0.2, 0.1, -0.3]),
                                    8, 8, 3)
  np.testing.assert_array_equal(placed[..., 3:], 0.0)   # transparent everywhere
  background = jax.random.uniform(jax.random.key(0), (8, 8, 3))
  colours = jnp.stack([background, jnp.zeros((8, 8, 3))])
  alphas = jnp.stack([jnp.ones((8, 8, 1)), placed[..., 3:4]])
  np.testing.assert_allclose(compositing.compose(colours, alphas,
                                                 compositing.fixed_occlusion(2)), background)


def test_exhaustive_selection_picks_the_best_sprite_background_pair():
  spec = _tiny_spec(n_layers=1, n_backgrounds=2, layer_transform=False, bkg_modules=("identity",),
                    selection="exhaustive", n_sprites=2)
  masks = np.zeros((2, 8, 8, 1), np.float32)
  masks[0, :4] = 1
  masks[1, 4:] = 1
  sprites = {"prototypes": jnp.stack([jnp.full((8, 8, 3), 0.2), jnp.full((8, 8, 3), 0.7)]),
             "masks": jnp.asarray(masks)}
  backgrounds = jnp.stack([jnp.full((8, 8, 3), 0.9), jnp.full((8, 8, 3), 0.4)])
  image = np.full((1, 8, 8, 3), 0.4, np.float32)
  image[0, 4:] = 0.7                                 # sprite 1 over background 1
  out = decomposition.decompose(spec, decomposition.Stage(1, 1, False),
                                {"sprites": sprites, "backgrounds": backgrounds}, {},
                                jnp.asarray(image), train=False)
  assert int(np.argmax(out["selection"][0, 0])) == 1 and int(out["background_choice"][0]) == 1
  np.testing.assert_allclose(out["reconstruction"], image, atol=1e-6)


def test_layer_labels_take_the_front_most_covering_layer():
  alphas = np.zeros((2, 3, 3, 1), np.float32)
  alphas[0, 0:2, 0:2] = 0.9      # layer 0: top-left block
  alphas[1, 1:3, 1:3] = 0.6      # layer 1 (in front): bottom-right block
  alphas[1, 0, 2] = 0.4          # below the 0.5 threshold: not covered
  labels = dti_sprites.layer_labels(alphas, compositing.fixed_occlusion(2))
  np.testing.assert_array_equal(labels, [[1, 1, 0], [1, 2, 2], [0, 2, 2]])
  # Hard occlusion 0.5 (predicted at init) marks neither in front: labels add up, clamped.
  half = jnp.array([[0.0, 0.5], [0.5, 0.0]])
  labels = dti_sprites.layer_labels(alphas, half)
  assert int(labels[1, 1]) == 2  # 1 + 2 = 3, clamped to L = 2
  semantic = dti_sprites.layer_labels(alphas, compositing.fixed_occlusion(2), jnp.array([7, 4]))
  np.testing.assert_array_equal(semantic[1], [7, 4, 4])
  # Uncovered pixels take the layer whose colour is closest (eval_with_bkg False).
  colours = jnp.stack([jnp.full((3, 3, 3), 0.1), jnp.full((3, 3, 3), 0.9)])
  image = jnp.full((3, 3, 3), 0.8)
  filled = dti_sprites.fill_uncovered(labels, colours, image)
  assert int(filled[0, 2]) == 2 and int(filled[2, 0]) == 2 and int(filled[0, 0]) == 1


def test_separable_placement_equals_the_bilinear_gather():
  from dti_jax.transforms import placement
  image = jax.random.uniform(jax.random.key(1), (24, 24, 5))
  # Jitted: one compilation each instead of one per operation.
  separable = jax.jit(lambda b: placement.place_with_position(image, b, 35, 35))
  gather = jax.jit(lambda b: placement.warp_to_canvas(image, placement.position_matrix(b),
                                                      35, 35))
  for beta in ([0.0, 0.0, 0.0], [-0.7, 0.31, -0.55], [0.4, -1.2, 0.9]):
    beta = jnp.asarray(beta)
    np.testing.assert_allclose(separable(beta), gather(beta), atol=1e-5)
  grad = jax.jit(jax.grad(lambda b: jnp.sum(placement.place_with_position(image, b, 35, 35)
                                            ** 2)))
  reference = jax.jit(jax.grad(lambda b: jnp.sum(placement.warp_to_canvas(
      image, placement.position_matrix(b), 35, 35) ** 2)))
  beta = jnp.array([-0.3, 0.2, 0.1])
  np.testing.assert_allclose(grad(beta), reference(beta), rtol=1e-4, atol=1e-4)
