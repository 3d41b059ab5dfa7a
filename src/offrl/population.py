"""Populations: one config per member, and seeds x members trained in one compiled call.

A population varies *tunable* fields of an algorithm's ``Config``: the fields declared with
``number(...)`` or ``integer(...)`` that the algorithm only computes with (β, α, the expectile, τ,
the discount, learning rates, ...). Their member values travel as arrays next to the seeds, and the
compiled update builds each agent's config with ``dataclasses.replace(config, beta=traced_value)``,
so one program trains every member. Fields that shape arrays or steer Python control flow
(hidden sizes, batch sizes, flags, choices, an integer used as a shape or a loop count) cannot be
traced: a population refuses them and ``offrl sweep`` runs their values as separate groups.

Agent ``a`` of a population with ``seeds`` seeds is member ``a // seeds`` with seed ``seed + a % seeds``,
so member ``m`` trains the same agents as a run of its config with ``seeds`` seeds.

Optimisers and network modules are static parts of a ``TrainState`` (``tx``, ``apply_fn``): they close
over config values such as a learning rate. The compiled update therefore re-traces ``init`` with
the member's traced config and uses *its* static parts (:func:`member_structure`), and hands the state
back with the run's canonical static parts, so the states keep one pytree structure between calls.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from offrl.config import ConfigError, check_value, config_name, declared, literal_choices

TUNABLE_KINDS = ("number", "integer")

#: Errors JAX raises when a traced value reaches a shape, a Python branch or a conversion to a Python scalar.
TRACE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError,
                jax.errors.TracerBoolConversionError, jax.errors.TracerArrayConversionError, TypeError)


def sweep_hint(name: str) -> str:
    return (f"a population can vary only fields that keep the program's shapes and branches; give the values of "
            f"{name} to `offrl sweep SPEC`, which trains them as separate groups")


def tunable_fields(config_cls: type) -> list[str]:
    """The fields a population may vary (numbers and integers; whether each traces is checked per run)."""
    return [f.name for f in dataclasses.fields(config_cls) if (v := declared(f)) is not None and v.kind in TUNABLE_KINDS]


def _field(config_cls: type, name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if name not in fields:
        guess = difflib.get_close_matches(name, list(fields), n=1)
        hint = f" (did you mean algo.{guess[0]}?)" if guess else ""
        raise ConfigError(f"{config_name(config_cls)} has no field {name!r}{hint}; valid fields: {', '.join(fields)}")
    return fields[name]


def parse_value(config_cls: type, name: str, raw: Any, where: str) -> Any:
    """One member value of field ``name``, from the command line (a string) or a spec file, checked against its range."""
    f = _field(config_cls, name)
    valid = declared(f)
    label = f"{config_name(config_cls)}.{name}"
    if valid is None or valid.kind not in TUNABLE_KINDS:
        raise ConfigError(f"{where}: {label} cannot take one value per population member ({sweep_hint(label)})")
    value = raw
    if isinstance(raw, str):
        try:
            value = int(raw) if valid.kind == "integer" else float(raw)
        except ValueError:
            kind = "an int" if valid.kind == "integer" else "a number"
            raise ConfigError(f"{where}: {label} value {raw!r} is not {kind}") from None
    elif isinstance(raw, bool) or not isinstance(raw, (int, float)) or (valid.kind == "integer" and not float(raw).is_integer()):
        kind = "an int" if valid.kind == "integer" else "a number"
        raise ConfigError(f"{where}: {label} value {raw!r} is not {kind}")
    value = int(value) if valid.kind == "integer" else float(value)
    choices = literal_choices(config_cls).get(name)
    check_value(label, valid, value, choices)
    return value


@dataclass(frozen=True)
class Population:
    """Member values of the varied fields: ``values[m]`` holds member m's value of each of ``names``."""

    names: tuple[str, ...]
    values: tuple[tuple, ...]

    @property
    def size(self) -> int:
        return len(self.values)

    def member(self, m: int) -> dict:
        return dict(zip(self.names, self.values[m]))

    def label(self, m: int) -> str:
        return " ".join(f"{n}={v:g}" for n, v in self.member(m).items())

    def member_config(self, config: Any, m: int) -> Any:
        return dataclasses.replace(config, **self.member(m))

    def agent_values(self, config_cls: type, seeds: int) -> dict[str, np.ndarray]:
        """Each field's value per agent (member-major: agent a is member a // seeds), as the dtype the program reads."""
        kinds = {n: declared(_field(config_cls, n)).kind for n in self.names}
        out = {}
        for j, name in enumerate(self.names):
            column = np.repeat(np.array([v[j] for v in self.values], np.float64), seeds)
            out[name] = column.astype(np.int32 if kinds[name] == "integer" else np.float32)
        return out

    def to_dict(self) -> dict:
        return {"names": list(self.names), "values": [list(v) for v in self.values]}

    @classmethod
    def from_dict(cls, d: dict) -> "Population":
        return cls(tuple(d["names"]), tuple(tuple(v) for v in d["values"]))

    @classmethod
    def of(cls, config_cls: type, members: dict[str, Sequence] | Iterable[dict], where: str = "population") -> "Population":
        """From aligned lists (``{"beta": [1, 3], "expectile": [0.7, 0.9]}``: two members) or member dicts;
        every value is parsed and range-checked (:class:`ConfigError`) before anything compiles."""
        if isinstance(members, dict):
            names = tuple(members)
            lengths = {len(v) for v in members.values()}
            if len(lengths) > 1:
                raise ConfigError(f"{where}: the fields {', '.join(names)} hold different numbers of member values {sorted(lengths)}")
            rows = [dict(zip(names, vals)) for vals in zip(*members.values())]
        else:
            rows = [dict(r) for r in members]
            names = tuple(rows[0]) if rows else ()
        if not rows or not names:
            raise ConfigError(f"{where}: the population is empty; give at least one value per field")
        values = []
        for row in rows:
            if tuple(row) != names:
                raise ConfigError(f"{where}: every member must set the same fields {names}; got {tuple(row)}")
            values.append(tuple(parse_value(config_cls, n, row[n], where) for n in names))
        return cls(names, tuple(values))


def parse_grid(config_cls: type, specs: Sequence[str]) -> Population:
    """``["algo.beta=1,3,10", "algo.expectile=0.7,0.9"]`` -> the 6 members of the product (beta varying slowest)."""
    axes: dict[str, list] = {}
    for spec in specs:
        where = f"--grid {spec}"
        if "=" not in spec:
            raise ConfigError(f"{where}: expected algo.FIELD=V1,V2,... (e.g. --grid algo.beta=1,3,10)")
        key, raw = spec.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key.startswith("algo."):
            raise ConfigError(f"{where}: only the algorithm's fields (algo.FIELD) can vary in a population; "
                              f"loop options such as {key!r} are one per run (or vary them with `offrl sweep SPEC`)")
        name = key[len("algo."):]
        items = [v.strip() for v in raw.split(",") if v.strip()]
        if not items:
            raise ConfigError(f"{where}: the grid of algo.{name} is empty; give one or more values: algo.{name}=V1,V2")
        if name in axes:
            raise ConfigError(f"{where}: algo.{name} appears twice in --grid")
        axes[name] = [parse_value(config_cls, name, v, where) for v in items]
    if not axes:
        raise ConfigError("--grid: the grid is empty; give algo.FIELD=V1,V2,...")
    names = tuple(axes)
    return Population(names, tuple(itertools.product(*axes.values())))


def check_members(config: Any, population: Population) -> None:
    """Build every member's config on the host (its cross-field rules run too): a bad member fails before any compile."""
    for m in range(population.size):
        population.member_config(config, m)


# ----------------------------------------------------------------------------- traced members


def traced_config(config: Any, values: dict) -> Any:
    """``config`` with the traced member values (``offrl.config`` lets traced values pass its checks)."""
    return dataclasses.replace(config, **values)


def member_structure(algo, config: Any, spec, total_steps: int):
    """The pytree structure of ``algo.init(config)`` traced here: its static parts (optimisers, modules) close over
    this trace's config values. The arrays init computes are unused and dropped by the compiler."""
    return jax.tree.structure(algo.init(config, spec, jax.random.PRNGKey(0), total_steps))


def with_member_statics(algo, config: Any, spec, total_steps: int, state):
    """(``state`` with static parts built from the traced ``config``, the structure to hand it back with)."""
    canonical = jax.tree.structure(state)
    return member_structure(algo, config, spec, total_steps).unflatten(jax.tree.leaves(state)), canonical


def canonical_structure(algo, config: Any, spec, total_steps: int):
    """The run's one state structure (static parts of the first member's concrete config), from an abstract init."""
    return jax.tree.structure(jax.eval_shape(lambda k: algo.init(config, spec, k, total_steps), jax.random.PRNGKey(0)))


def check_traceable(algo, config: Any, spec, total_steps: int, population: Population, trial: Callable[[dict], Any]) -> None:
    """Trace ``trial(values)`` (one abstract update with traced member values); a field that reaches a shape
    or a Python branch is refused, by name, before anything compiles."""
    dtype = {n: (jnp.int32 if isinstance(population.values[0][j], int) else jnp.float32) for j, n in enumerate(population.names)}

    def attempt(names):
        values = {n: jax.ShapeDtypeStruct((), dtype[n]) for n in names}
        jax.eval_shape(trial, values)

    try:
        attempt(population.names)
        return
    except TRACE_ERRORS as exc:
        first = exc
    for name in population.names:
        try:
            attempt((name,))
        except TRACE_ERRORS:
            label = f"{config_name(config)}.{name}"
            raise ConfigError(f"{label} changes array shapes or the program's control flow in {algo.name}, so its "
                              f"values cannot share one compiled call ({sweep_hint(label)})") from None
    label = ", ".join(f"{config_name(config)}.{n}" for n in population.names)
    raise ConfigError(f"{label} together cannot be traced in {algo.name} ({type(first).__name__}); "
                      f"{sweep_hint('these fields')}") from None


def recording(config: Any) -> tuple[Any, set]:
    """A copy of ``config`` that records the fields read from it: the host-side hooks (``prepare_dataset``,
    ``device_extras``, ``device_model``) see one config for every member, so a population must not vary what they read."""
    reads: set = set()
    cls = type(config)
    names = {f.name for f in dataclasses.fields(config)}

    def getattribute(self, name):
        if name in names:
            reads.add(name)
        return object.__getattribute__(self, name)

    recorder_cls = type(cls.__name__, (cls,), {"__getattribute__": getattribute, "__module__": cls.__module__})
    proxy = object.__new__(recorder_cls)
    for f in dataclasses.fields(config):
        object.__setattr__(proxy, f.name, getattr(config, f.name))
    reads.clear()
    return proxy, reads


def refuse_host_reads(algo, config: Any, population: Population, reads: set) -> None:
    clash = [n for n in population.names if n in reads]
    if clash:
        label = f"{config_name(config)}.{clash[0]}"
        raise ConfigError(f"{label} is read on the host by {algo.name} when it prepares the data (one copy for every "
                          f"member), so a population cannot vary it ({sweep_hint(label)})")


# ----------------------------------------------------------------------------- summaries


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95% Student-t confidence interval of the mean (0 for one value)."""
    x = np.asarray([v for v in values if v is not None], np.float64)
    if x.size < 2:
        return 0.0
    from scipy import stats

    return float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def member_rows(population: Population, seeds: int, results: list[dict], metrics: Optional[dict], step: int) -> list[dict]:
    """One row per member: its values, its seeds' final returns/scores (mean, std, 95% CI) and last train metrics."""
    rows = []
    for m in range(population.size):
        agents = range(m * seeds, (m + 1) * seeds)
        row: dict = {"member": m, **population.member(m), "seeds": seeds, "step": step}
        if results:
            returns = [results[a]["return_mean"] for a in agents]
            row.update(return_mean=float(np.mean(returns)), return_std=float(np.std(returns)), return_ci95=ci95(returns))
            if results[0].get("normalized_score") is not None:
                scores = [results[a]["normalized_score"] for a in agents]
                row.update(normalized_score=float(np.mean(scores)), normalized_score_std=float(np.std(scores)),
                           normalized_score_ci95=ci95(scores), per_seed_scores=[float(s) for s in scores])
            row["per_seed_returns"] = [float(r) for r in returns]
            if "returns" in results[0]:  # every episode: what a tuning-budget bandit draws from (offrl.tuning)
                row["per_seed_episode_returns"] = [[float(x) for x in results[a]["returns"]] for a in agents]
        for key, value in (metrics or {}).items():
            value = np.asarray(value, np.float64)[list(agents)]
            row[key] = float(np.nanmean(value)) if np.isfinite(value).any() else None
        rows.append(row)
    return rows


def write_member_rows(run_dir, rows: list[dict]) -> None:
    """``population.jsonl`` and ``population.csv`` in the run folder (atomic: temp file + rename)."""
    import csv
    import io
    import os
    from pathlib import Path

    run_dir = Path(run_dir)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    columns = [k for k, v in rows[0].items() if not isinstance(v, (list, dict))] if rows else []
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    for name, content in (("population.jsonl", text), ("population.csv", buf.getvalue())):
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text(content)
        os.replace(tmp, run_dir / name)
