"""Known answers for the shared network initialisations (offrl.nets.NETWORK_INITS)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.nets import MLP, ActionVAE, Critic, DeterministicActor, GaussianActor, TanhGaussianActor, ValueNet


def _dense_layers(params):
    """(kernel, bias) of every Dense layer in a parameter tree."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    kernels = {jax.tree_util.keystr(p[:-1]): np.asarray(x) for p, x in flat if jax.tree_util.keystr(p[-1:]) == "['kernel']"}
    biases = {jax.tree_util.keystr(p[:-1]): np.asarray(x) for p, x in flat if jax.tree_util.keystr(p[-1:]) == "['bias']"}
    assert kernels and kernels.keys() == biases.keys()
    return [(kernels[k], biases[k]) for k in kernels]


def test_uniform_fan_in_draws_kernel_and_bias_from_plus_minus_one_over_sqrt_fan_in():
    params = MLP((300, 200), 4, initializer="uniform_fan_in").init(jax.random.PRNGKey(0), jnp.zeros((1, 100)))
    layers = _dense_layers(params)
    assert [k.shape for k, _ in layers] == [(100, 300), (300, 200), (200, 4)]
    for kernel, bias in layers:
        bound = 1.0 / np.sqrt(kernel.shape[0])
        for x in (kernel, bias):
            assert np.all(np.abs(x) <= bound)
        # U(-b, b) has variance b^2 / 3; 800+ draws per layer put the estimate within 15%
        np.testing.assert_allclose(kernel.var(), bound**2 / 3, rtol=0.15)
        assert np.abs(bias).max() > 0.5 * bound  # biases are drawn, not zero


def test_default_init_is_lecun_normal_with_zero_bias():
    params = MLP((300,), 4).init(jax.random.PRNGKey(0), jnp.zeros((1, 100)))
    (k1, b1), (k2, b2) = _dense_layers(params)
    assert not b1.any() and not b2.any()
    # truncated normal with variance 1 / fan_in (three times that of uniform_fan_in)
    np.testing.assert_allclose(k1.var(), 1.0 / 100, rtol=0.1)


def test_small_output_init_has_uniform_kernels_biases_point_one_and_a_small_output_layer():
    params = MLP((300, 200), 4, initializer="small_output", output_init_scale=0.01).init(jax.random.PRNGKey(0), jnp.zeros((1, 100)))
    (k1, b1), (k2, b2), (k3, b3) = _dense_layers(params)
    for kernel, bias in ((k1, b1), (k2, b2)):
        bound = 1.0 / np.sqrt(kernel.shape[0])
        assert np.all(np.abs(kernel) <= bound)
        np.testing.assert_allclose(kernel.var(), bound**2 / 3, rtol=0.15)
        np.testing.assert_array_equal(bias, np.float32(0.1))
    for x in (k3, b3):
        assert np.all(np.abs(x) <= 0.01)
    assert np.abs(k3).max() > 0.005 and np.abs(b3).max() > 0  # drawn, not zero
    # the actors' output layers start within 1e-3, the critics' within 3e-3 (the reference code's bounds)
    for net, inputs, bound in ((DeterministicActor((16,), 2, initializer="small_output"), (jnp.zeros((1, 3)),), 1e-3),
                               (TanhGaussianActor((16,), 2, initializer="small_output"), (jnp.zeros((1, 3)),), 1e-3),
                               (Critic((16,), initializer="small_output"), (jnp.zeros((1, 3)), jnp.zeros((1, 2))), 3e-3)):
        (_, hidden_bias), (out_kernel, out_bias) = _dense_layers(net.init(jax.random.PRNGKey(1), *inputs))
        np.testing.assert_array_equal(hidden_bias, np.float32(0.1))
        assert np.abs(np.concatenate([out_kernel.ravel(), out_bias.ravel()])).max() <= bound
        assert np.abs(out_kernel).max() > bound / 2


def test_layer_norm_goes_before_or_after_the_activation():
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    outputs = {}
    for after in (False, True):
        net = MLP((8,), 3, layer_norm=True, layer_norm_after_activation=after)
        params = net.init(jax.random.PRNGKey(0), x)
        (k1, b1), (k2, b2) = [(np.asarray(params["params"][f"Dense_{i}"]["kernel"]), np.asarray(params["params"][f"Dense_{i}"]["bias"]))
                              for i in (0, 1)]
        h = np.asarray(x, np.float64) @ k1 + b1
        norm = lambda z: (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-6)  # scale 1, offset 0 at init
        h = norm(np.maximum(h, 0)) if after else np.maximum(norm(h), 0)
        outputs[after] = np.asarray(net.apply(params, x))
        np.testing.assert_allclose(outputs[after], h @ k2 + b2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(outputs[False], outputs[True], atol=1e-3)


@pytest.mark.parametrize("make", [
    lambda init: (GaussianActor((16,), 2, initializer=init), (jnp.zeros((1, 3)),)),
    lambda init: (Critic((16,), initializer=init), (jnp.zeros((1, 3)), jnp.zeros((1, 2)))),
    lambda init: (ValueNet((16,), initializer=init), (jnp.zeros((1, 3)),)),
    lambda init: (ActionVAE((16,), 2, 4, initializer=init), (jnp.zeros((1, 3)), jnp.zeros((1, 2)), jax.random.PRNGKey(2))),
])
def test_networks_pass_their_init_to_every_layer(make):
    net, inputs = make("uniform_fan_in")
    for kernel, bias in _dense_layers(net.init(jax.random.PRNGKey(1), *inputs)):
        fan_in = kernel.shape[-2]
        assert np.abs(bias).max() > 0 and np.abs(np.concatenate([kernel.ravel(), bias.ravel()])).max() <= 1 / np.sqrt(fan_in)
    bad_net, bad_inputs = make("xavier")
    with pytest.raises(ValueError, match="unknown network init 'xavier'.*lecun_normal, uniform_fan_in"):
        bad_net.init(jax.random.PRNGKey(1), *bad_inputs)


def test_log_std_bounds_clip_and_sigmoid():
    obs = jnp.zeros((4, 3))
    clip, sigmoid = GaussianActor((8,), 2, log_std_bound="clip"), GaussianActor((8,), 2, log_std_bound="sigmoid")
    params = clip.init(jax.random.PRNGKey(0), obs)
    np.testing.assert_array_equal(clip.apply(params, obs)[1], 0.0)  # a free parameter starting at 0
    np.testing.assert_allclose(sigmoid.apply(params, obs)[1], -1.5)  # -5 + 7 sigmoid(0): the midpoint
    for theta, want_clip, want_sigmoid in [(-40.0, -5.0, -5.0), (1.0, 1.0, -5.0 + 7.0 / (1.0 + np.exp(-1.0))), (40.0, 2.0, 2.0)]:
        p = {"params": {**params["params"], "log_std": jnp.full((2,), theta)}}
        np.testing.assert_allclose(clip.apply(p, obs)[1], want_clip, atol=1e-6)
        np.testing.assert_allclose(sigmoid.apply(p, obs)[1], want_sigmoid, atol=1e-6)
    # The sigmoid keeps a gradient beyond the bounds' reach of a clip.
    grad = jax.grad(lambda t, net: net.apply({"params": {**params["params"], "log_std": t}}, obs)[1].sum())
    assert np.all(np.asarray(grad(jnp.full((2,), 3.0), clip)) == 0.0)
    assert np.all(np.asarray(grad(jnp.full((2,), 3.0), sigmoid)) > 0.0)
    with pytest.raises(ValueError, match="unknown log_std_bound 'tanh'"):
        GaussianActor((8,), 2, log_std_bound="tanh").init(jax.random.PRNGKey(0), obs)


@pytest.mark.parametrize("bound, start", [("sigmoid", -1.5), ("clip", 0.0)])
def test_iql_passes_its_log_std_bound_to_the_actor(bound, start):
    from offrl.algos import DataSpec, iql

    config = iql.Config(hidden_dims=(8,), log_std_bound=bound)
    state = iql.init(config, DataSpec(3, 2), jax.random.PRNGKey(0), 10)
    _, log_std = state.actor.apply_fn(state.actor.params, jnp.zeros((1, 3)))
    np.testing.assert_allclose(log_std, start)
    assert iql.Config().log_std_bound == "sigmoid"  # the default, measured in docs/algorithms/iql.md
