"""The behaviour-policy zoo shipped with the package: small SAC policies as safe array files.

Each environment has a folder ``offrl/envs/zoo/ENV_ID/`` with one pair of files per policy::

    expert.msgpack / expert.json        the trained policy
    medium.msgpack / medium.json        a snapshot at about a third of the expert's normalised score
    series-KK.msgpack / series-KK.json  snapshots from early training up to medium (K = 0, 1, ...)
    references.json                     mean returns over 100 episodes of the uniform random policy
                                        and of the expert: the normalisation references

A ``.msgpack`` file holds only the actor's parameters (flax's msgpack encoding of arrays: no code is
executed on load); its ``.json`` card says which environment and training run it comes from, how many
env steps it was trained for, and its mean return over 100 episodes (``offrl zoo export`` writes
both, with :func:`offrl.zoo.save_zoo_policy`). The policy is the tanh-squashed Gaussian of :class:`offrl.nets.TanhGaussianActor` on raw
observations; :class:`ZooPolicy` runs it in numpy (float64), so data generation does not depend on
JAX or on the accelerator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ZOO_DIR = Path(__file__).parent / "zoo"
"""Where the shipped policies live."""
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # as offrl.nets.TanhGaussianActor


class ZooError(ValueError):
    """A missing or unreadable zoo policy; the message says which file and what to do."""


@dataclass
class ZooPolicy:
    """A tanh-Gaussian MLP policy: ``layers`` are ``(kernel, bias)`` pairs, ReLU between them."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    card: dict

    @property
    def obs_dim(self) -> int:
        return int(self.layers[0][0].shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.layers[-1][0].shape[1]) // 2

    def mean_log_std(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pre-squash mean and clipped log-std for a batch of observations ``(B, obs_dim)``."""
        x = np.asarray(observations, np.float64)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"observations must have shape (batch, {self.obs_dim}); got {x.shape}")
        for i, (kernel, bias) in enumerate(self.layers):
            # einsum, not matmul: numpy's BLAS would split a product this small over threads,
            # which is slower and, on a busy machine, much slower; einsum stays on one thread.
            x = np.einsum("bi,ij->bj", x, kernel) + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        mean, log_std = np.split(x, 2, axis=-1)
        return mean, np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def act(self, observations: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions in [-1, 1]: ``tanh(mean)`` without ``rng``, ``tanh(mean + std * eps)`` with it."""
        mean, log_std = self.mean_log_std(observations)
        if rng is None:
            return np.tanh(mean).astype(np.float32)
        return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape)).astype(np.float32)


def params_to_layers(params: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Dense layers of a ``TanhGaussianActor`` parameter tree, in order."""
    tree = params
    while "params" in tree and len(tree) == 1:
        tree = tree["params"]
    tree = tree.get("MLP_0", tree)
    names = sorted((k for k in tree if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    if not names:
        raise ZooError(f"no Dense layers in the policy parameters (keys: {sorted(tree)})")
    return [(np.asarray(tree[n]["kernel"], np.float64), np.asarray(tree[n]["bias"], np.float64)) for n in names]


def load_zoo_policy_file(path: str | Path) -> ZooPolicy:
    """Load a policy file and its card."""
    from flax import serialization

    path = Path(path)
    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        raise ZooError(f"zoo policy {path} or its card {card_path.name} is missing; reinstall offrl or run `offrl zoo export`")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        if payload.get("format") != "offrl-zoo-policy":
            raise ValueError("not an offrl zoo policy file")
        layers = params_to_layers(payload["layers"])
    except Exception as exc:  # corrupt or foreign file
        raise ZooError(f"cannot read zoo policy {path}: {exc}; reinstall offrl or re-export the policy") from exc
    return ZooPolicy(layers=layers, card=json.loads(card_path.read_text()))


def zoo_envs() -> list[str]:
    """Environment ids with a shipped zoo folder."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if p.is_dir()) if ZOO_DIR.is_dir() else []


def load_zoo_policy(env_id: str, role: str) -> ZooPolicy:
    """The shipped policy ``role`` (``expert``, ``medium``, ``series-00`` ...) of ``env_id``."""
    folder = ZOO_DIR / env_id
    if not folder.is_dir():
        raise ZooError(f"no zoo policies for {env_id!r}; shipped: {', '.join(zoo_envs()) or 'none'}")
    return load_zoo_policy_file(folder / f"{role}.msgpack")


def zoo_series(env_id: str) -> list[str]:
    """The roles of the snapshot series of ``env_id``, in training order."""
    return sorted(p.stem for p in (ZOO_DIR / env_id).glob("series-*.msgpack"))


def zoo_references(env_id: str) -> dict:
    """``{"random": mean return, "expert": mean return, ...}`` of ``env_id`` (100 episodes each)."""
    path = ZOO_DIR / env_id / "references.json"
    if not path.is_file():
        raise ZooError(f"{path} is missing; reinstall offrl or run `offrl zoo export`")
    return json.loads(path.read_text())
