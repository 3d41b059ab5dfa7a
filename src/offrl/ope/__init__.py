"""Off-policy evaluation: a policy's value estimated from logged episodes, without running it.

One small module per estimator family, each returning an :class:`Estimate` with a bootstrap confidence
interval over episodes:

* :mod:`offrl.ope.importance`: trajectory-wise and per-decision importance sampling and their weighted
  forms (IS, WIS, PDIS, WPDIS), with reported weight clipping and effective sample size;
* :mod:`offrl.ope.doubly_robust`: doubly robust and weighted doubly robust (DR, WDR);
* :mod:`offrl.ope.fqe`: fitted Q evaluation in the compiled loop;
* :mod:`offrl.ope.model_based`: rollouts in the learned dynamics ensemble from the data's start states;

with the pieces they share: the episodes (:mod:`offrl.ope.episodes`), the policies' densities
(:mod:`offrl.ope.policy`), the behaviour's log-probabilities, exact or from a fitted proxy
(:mod:`offrl.ope.behaviour`), :func:`evaluate_policy` (:mod:`offrl.ope.run`) and the benchmark's metrics
(:mod:`offrl.ope.metrics`). The package sits below the CLI: it knows policies as :class:`Policy`
functions, never an algorithm's file (``offrl.offpolicy`` turns a trained run into a :class:`Policy`).
"""

from offrl.ope.behaviour import BehaviourLogProbs, ProxyConfig, behaviour_log_probs, fit_proxy
from offrl.ope.doubly_robust import doubly_robust
from offrl.ope.episodes import Episodes, Estimate, OPEError, episodes_of, with_bootstrap
from offrl.ope.fqe import FQEConfig, FQEModel, fit_fqe, fqe_estimate
from offrl.ope.importance import importance_sampling, importance_weights, log_ratios
from offrl.ope.metrics import normalised_absolute_error, regret_at_k, spearman
from offrl.ope.model_based import ModelBasedConfig, model_based_estimate
from offrl.ope.policy import Policy, smoothed
from offrl.ope.run import DEFAULT_ESTIMATORS, ESTIMATORS, OPEConfig, evaluate_policy, parse_estimators

__all__ = ["BehaviourLogProbs", "DEFAULT_ESTIMATORS", "ESTIMATORS", "Episodes", "Estimate", "FQEConfig", "FQEModel",
           "ModelBasedConfig", "OPEConfig", "OPEError", "Policy", "ProxyConfig", "behaviour_log_probs", "doubly_robust",
           "episodes_of", "evaluate_policy", "fit_fqe", "fit_proxy", "fqe_estimate", "importance_sampling",
           "importance_weights", "log_ratios", "model_based_estimate", "normalised_absolute_error", "parse_estimators",
           "regret_at_k", "smoothed", "spearman", "with_bootstrap"]
