"""Algorithms: one file each, known to the rest of the library only through the registry."""

from offrl.algos.registry import Algo, DataSpec, algo_for_config, get_algo, list_algos, register

# One import per algorithm file; importing registers it.
from offrl.algos import bc, iql, sac, td3bc  # noqa: E402,F401
from offrl.algos import awac, awr, crr  # noqa: E402,F401
from offrl.algos import brac, percent_bc  # noqa: E402,F401
from offrl.algos import bcq, bear  # noqa: E402,F401
from offrl.algos import cql  # noqa: E402,F401
from offrl.algos import edac, rebrac  # noqa: E402,F401
from offrl.algos import bc_discrete, cql_discrete, dqn_offline, iql_discrete  # noqa: E402,F401
from offrl.algos import combo, mobile, mopo  # noqa: E402,F401
from offrl.algos import dt, rvs  # noqa: E402,F401
from offrl.algos import decision_diffuser, diffusion_ql, fql, idql  # noqa: E402,F401

__all__ = ["Algo", "DataSpec", "algo_for_config", "get_algo", "list_algos", "register"]
