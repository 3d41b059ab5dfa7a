"""IQL implementation variants on one dataset: which difference to d3rlpy's IQL makes ours learn slower?

    python benchmarks/iql_variants.py VARIANT DATASET STEPS SEEDS

VARIANT names patches (combine with '-'): ``sig`` makes the actor's state-independent log-std
``log_std_min + sigmoid(p) (log_std_max - log_std_min)`` (d3rlpy's NormalPolicy; initial std 0.22
instead of 1); ``torchinit`` draws every Dense kernel and bias from U(+-1/sqrt(fan_in)) (PyTorch's
nn.Linear default; the same distribution as IQL's ``--algo.network-init uniform_fan_in``, added
after these runs); ``sigopt`` sets the library option ``log_std_bound="sigmoid"`` (the same
parameterisation as ``sig``); ``oldv`` fits the critics to r + discount V(s') with V *before* this
update's value step (d3rlpy's order; ours and the IQL authors' use V after it); any other name runs
the defaults. Trains with ``offrl.fit`` (evaluations every
STEPS/5 updates, 10 episodes) into OUT/VARIANT-DATASET-SEEDSxSTEPS and appends a JSON line to
OUT/results.jsonl (OUT: $IQL_VARIANTS_OUT, default runs/iql_variants). Results: benchmarks/results/iql-init-2026-11-27.md.
"""
import json, os, sys, time, types
from pathlib import Path
import numpy as np, jax, jax.numpy as jnp, flax.linen as fnn
import offrl, offrl.nets as N
from offrl.algos import get_algo
import offrl.algos.iql as iql

variant, dataset, steps, seeds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
OUT = Path(os.environ.get("IQL_VARIANTS_OUT", "runs/iql_variants"))
OUT.mkdir(parents=True, exist_ok=True)

if "sig" in variant:
    class SigActor(N.GaussianActor):
        @fnn.compact
        def __call__(self, observations, training=False):
            out = N.MLP(self.hidden_dims, self.action_dim, dropout_rate=self.dropout_rate)(observations, training)
            p = self.param("log_std", fnn.initializers.zeros, (self.action_dim,))
            log_std = self.log_std_min + jax.nn.sigmoid(p) * (self.log_std_max - self.log_std_min)
            return jnp.tanh(out), jnp.broadcast_to(log_std, out.shape)
    iql.GaussianActor = SigActor

if "torchinit" in variant:
    class TorchDense(fnn.Module):
        features: int
        @fnn.compact
        def __call__(self, x):
            fan_in = x.shape[-1]; b = 1.0 / np.sqrt(fan_in)
            init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -b, b)
            k = self.param("kernel", init, (fan_in, self.features))
            bias = self.param("bias", init, (self.features,))
            return x @ k + bias
    ns = types.SimpleNamespace(**{k: getattr(fnn, k) for k in dir(fnn) if not k.startswith("__")})
    ns.Dense = TorchDense
    N.nn = ns

if "oldv" in variant:
    import dataclasses
    from offrl.algos import registry
    from offrl.losses import polyak_update

    def update_old_v(config, state, batch, key):
        q, before = iql.target_q(state, batch), state
        grads, v_info = jax.grad(lambda p: iql.value_loss(config, state, p, batch, q), has_aux=True)(state.value.params)
        state = state.replace(value=state.value.apply_gradients(grads=grads))
        grads, a_info = jax.grad(lambda p: iql.actor_loss(config, state, p, batch, q, key), has_aux=True)(state.actor.params)
        state = state.replace(actor=state.actor.apply_gradients(grads=grads))
        grads, c_info = jax.grad(lambda p: iql.critic_loss(config, before, p, batch), has_aux=True)(state.critic.params)
        critic = state.critic.apply_gradients(grads=grads)
        state = state.replace(critic=critic, step=state.step + 1,
                              target_critic_params=polyak_update(critic.params, state.target_critic_params, config.tau))
        return state, {**v_info, **a_info, **c_info}

    registry._REGISTRY["iql"] = dataclasses.replace(registry._REGISTRY["iql"], update=update_old_v)

algo = get_algo("iql")
config = algo.config_cls(log_std_bound="sigmoid") if "sigopt" in variant else algo.config_cls()
t = time.time()
res = offrl.fit(config, dataset, steps=steps, seeds=seeds, eval_episodes=10, eval_interval=steps // 5,
                run_dir=OUT / f"{variant}-{dataset}-{seeds}x{steps}", progress=False, plot=False)
scores = [float(r["normalized_score"]) for r in res.final_eval]
out = {"variant": variant, "dataset": dataset, "steps": steps, "seeds": seeds, "per_seed": scores,
       "mean": float(np.mean(scores)), "std": float(np.std(scores)), "seconds": round(time.time() - t)}
print(json.dumps(out))
with open(OUT / "results.jsonl", "a") as f:
    f.write(json.dumps(out) + "\n")
