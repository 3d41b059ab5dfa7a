"""One call that evaluates a policy on a dataset with several estimators, sharing their pieces: the
episodes, the behaviour log-probs (computed once per dataset), the importance weights and FQE's Q-hat
(which the doubly robust estimators reuse)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from offrl.config import Checked, integer, number
from offrl.data import Dataset
from offrl.ope.behaviour import BehaviourLogProbs, ProxyConfig, behaviour_log_probs
from offrl.ope.doubly_robust import doubly_robust
from offrl.ope.episodes import Episodes, Estimate, OPEError, episodes_of
from offrl.ope.fqe import FQEConfig, fit_fqe, fqe_estimate
from offrl.ope.importance import importance_sampling, importance_weights, log_ratios
from offrl.ope.model_based import ModelBasedConfig, model_based_estimate
from offrl.ope.policy import Policy, batched_log_prob, check_observations

ESTIMATORS = ("is", "wis", "pdis", "wpdis", "dr", "wdr", "fqe", "mb")
"""Every estimator: importance sampling (is, wis, pdis, wpdis), doubly robust (dr, wdr), FQE, model-based (mb)."""
DEFAULT_ESTIMATORS = ("is", "wis", "pdis", "wpdis", "dr", "wdr", "fqe")
"""What runs when none are named (mb trains a dynamics ensemble, so it is asked for by name)."""
WEIGHTED = ("is", "wis", "pdis", "wpdis", "dr", "wdr")
"""Estimators that need importance weights (the policy's density and the behaviour's)."""


@dataclass(frozen=True)
class OPEConfig(Checked):
    """Settings shared by the estimators."""

    discount: float = number(0.99, ge=0, le=1)
    """gamma: every estimator estimates E[sum_t gamma^t r_t] from the data's start states."""
    max_weight: Optional[float] = number(None, gt=0, optional=True)
    """Clip per-decision importance weights at this value (reported); None: no clipping."""
    num_bootstrap: int = integer(200, ge=0)
    """Bootstrap resamples of the episodes for the confidence interval (0: none)."""
    confidence: float = number(0.95, gt=0, lt=1)
    """Coverage of the percentile interval."""
    seed: int = integer(0)
    """Seed of the bootstrap."""


def parse_estimators(text: str | None) -> tuple[str, ...]:
    """``"is,wdr,fqe"`` -> the names, checked; None or empty: :data:`DEFAULT_ESTIMATORS`."""
    if not text:
        return DEFAULT_ESTIMATORS
    names = tuple(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in ESTIMATORS]
    if bad or not names:
        raise OPEError(f"unknown estimator(s) {', '.join(bad) or repr(text)}; valid: {', '.join(ESTIMATORS)}")
    return names


def evaluate_policy(dataset: Dataset, policy: Policy, estimators: tuple[str, ...] = DEFAULT_ESTIMATORS, *,
                    config: OPEConfig = OPEConfig(), behaviour: BehaviourLogProbs | None = None,
                    proxy: ProxyConfig = ProxyConfig(), fqe: FQEConfig | None = None, model: ModelBasedConfig | None = None,
                    episodes: Episodes | None = None, strict: bool = True,
                    log: Callable[[str], None] | None = None) -> tuple[list[Estimate], dict[str, str]]:
    """The estimates of ``policy``'s value; returns ``(estimates, skipped)``.

    An estimator that cannot apply (IS and DR for a policy without a density, mb on discrete actions) raises
    :class:`OPEError` when ``strict``; otherwise it is left out and ``skipped[name]`` says why.
    ``behaviour`` (from :func:`offrl.ope.behaviour.behaviour_log_probs`) is computed here when None and needed.
    """
    check_observations(policy, dataset.observations)
    episodes = episodes_of(dataset) if episodes is None else episodes
    fqe = FQEConfig(discount=config.discount) if fqe is None else fqe
    model = ModelBasedConfig(discount=config.discount) if model is None else model
    if fqe.discount != config.discount or model.discount != config.discount:
        raise OPEError(f"FQE and model-based discounts ({fqe.discount}, {model.discount}) differ from the estimators' "
                       f"({config.discount}). Fix: give them the same discount")
    boot = dict(num_bootstrap=config.num_bootstrap, confidence=config.confidence, seed=config.seed)
    out, skipped = [], {}
    weights, fqe_model = None, None
    name = dataset.info.name or "the dataset"
    for est in estimators:
        try:
            if est in WEIGHTED and weights is None:
                if not policy.has_density:
                    # raises the policy's own message (deterministic actor: use FQE/mb or --smoothing)
                    batched_log_prob(policy, np.asarray(dataset.observations[:1]), np.asarray(dataset.actions[:1]))
                if behaviour is None:
                    behaviour = behaviour_log_probs(dataset, proxy, log)
                lp = batched_log_prob(policy, np.asarray(dataset.observations, np.float32), np.asarray(dataset.actions))
                weights = importance_weights(episodes, log_ratios(lp, behaviour.log_probs, name), config.max_weight)
                weights.diagnostics["behaviour"] = behaviour.source
            if est in ("dr", "wdr", "fqe") and fqe_model is None:
                fqe_model = fit_fqe(dataset, policy, fqe, log)
            if est in ("is", "wis", "pdis", "wpdis"):
                out.append(importance_sampling(episodes, weights, config.discount, est, **boot))
            elif est in ("dr", "wdr"):
                obs = np.asarray(dataset.observations, np.float32)
                q = fqe_model.q(obs, np.asarray(dataset.actions))
                out.append(doubly_robust(episodes, weights, q, fqe_model.v(obs), config.discount, est, **boot))
            elif est == "fqe":
                out.append(fqe_estimate(episodes, fqe_model, dataset, **boot))
            elif est == "mb":
                out.append(model_based_estimate(dataset, episodes, policy, model, log=log, **boot))
            else:
                raise OPEError(f"unknown estimator {est!r}; valid: {', '.join(ESTIMATORS)}")
        except OPEError as exc:
            if strict:
                raise
            skipped[est] = str(exc)
    return out, skipped
