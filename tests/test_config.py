"""Config fields declare their valid range (offrl.config) and a config is checked when it is built.

The contract tests walk every field of every registered algorithm's Config: a new algorithm whose
fields lack a declared range fails here with a message saying what to add.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

import offrl
from offrl.algos import list_algos
from offrl.config import Checked, ConfigError, Valid, choice, declared, flag, integer, literal_choices, number, sizes
from offrl.train import config_from_dict, config_to_dict

from conftest import make_dataset

ALGOS = sorted(list_algos())
HOW_TO_DECLARE = (
    "declare each field's valid range with offrl.config: `x: float = number(0.5, gt=0, lt=1)`, "
    "`n: int = integer(4, ge=1)`, `kind: Literal['a', 'b'] = choice('a')`, `on: bool = flag(True)`, "
    "`hidden_dims: tuple[int, ...] = sizes((256, 256))`, `number(None, optional=True)` for Optional fields; "
    "and subclass offrl.config.Checked (see docs/architecture.md, 'Valid ranges')")


def outside(valid: Valid, choices: tuple | None) -> list:
    """Values just outside a declared range (and of the wrong type), derived from its metadata alone."""
    if valid.kind == "flag":
        return ["yes", 1]
    if valid.kind == "choice":
        assert choices, "a choice field needs choices or a Literal annotation"
        return ["no-such-choice"]
    if valid.kind == "sizes":
        return [(0,), (8, -1), (8, 2.5), [8]]
    if valid.kind == "text":
        return [1.5, b"bytes"] + ([] if valid.optional else [None])
    integral = valid.kind == "integer"
    values = [float("inf")] + ([2.5] if integral else [float("nan")])
    eps = lambda bound: 1 if integral else 1e-3 * max(1.0, abs(bound))
    if valid.gt is not None:
        values += [valid.gt, valid.gt - eps(valid.gt)]
    if valid.ge is not None:
        values.append(valid.ge - eps(valid.ge))
    if valid.lt is not None:
        values += [valid.lt, valid.lt + eps(valid.lt)]
    if valid.le is not None:
        values.append(valid.le + eps(valid.le))
    if not valid.optional:
        values.append(None)
    return values


@pytest.mark.parametrize("name", ALGOS)
def test_every_config_field_declares_its_valid_range(name):
    cls = list_algos()[name].config_cls
    assert issubclass(cls, Checked), f"{name}: {cls.__qualname__} must subclass offrl.config.Checked; {HOW_TO_DECLARE}"
    missing = [f.name for f in dataclasses.fields(cls) if declared(f) is None]
    assert not missing, f"{name}: {cls.__module__}.{cls.__qualname__} fields without a declared range: {missing}; {HOW_TO_DECLARE}"


@pytest.mark.parametrize("name", ALGOS)
def test_every_out_of_range_value_is_refused_naming_the_field(name):
    cls = list_algos()[name].config_cls
    default = cls()  # the defaults are in range
    assert config_from_dict(cls, config_to_dict(default)) == default  # and survive a stored run's config.json
    checked = 0
    for f in dataclasses.fields(cls):
        valid = declared(f)
        choices = valid.choices or literal_choices(cls).get(f.name)
        for value in outside(valid, choices):
            with pytest.raises(ConfigError, match=rf"\.{f.name} = ") as err:
                cls(**{f.name: value})
            message = str(err.value)
            assert isinstance(err.value, ValueError) and "\n" not in message
            assert message.startswith(f"{name_of(cls)}.{f.name} = {value!r} is ") and "must be" in message, message
            checked += 1
    assert checked >= len(dataclasses.fields(cls))


def name_of(cls) -> str:
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"


@pytest.mark.parametrize("name", ALGOS)
def test_the_bounds_themselves_are_accepted_where_the_range_is_closed(name):
    """ge / le bounds are valid values: the check is not off by one."""
    cls = list_algos()[name].config_cls
    for f in dataclasses.fields(cls):
        valid = declared(f)
        for bound in (valid.ge, valid.le):
            if bound is not None and valid.kind in ("number", "integer"):
                assert getattr(cls(**{f.name: bound}), f.name) == bound
        if valid.optional:
            assert getattr(cls(**{f.name: None}), f.name) is None


@dataclass(frozen=True)
class Example(Checked):
    rate: float = number(0.7, gt=0, lt=1)
    """A rate."""
    discount: float = number(0.99, ge=0, le=1)
    """A discount."""
    steps: int = integer(10, ge=1)
    """Steps."""
    gap: Optional[float] = number(None, optional=True)
    """Any finite number or None."""
    kind: Literal["a", "b"] = choice("a")
    """The Literal's values."""
    on: bool = flag(True)
    """A flag."""
    dims: tuple[int, ...] = sizes((4, 4))
    """Sizes."""


@pytest.mark.parametrize("values, message", [
    (dict(rate=1.5), "test_config.Example.rate = 1.5 is out of range: must be in (0, 1)"),
    (dict(rate=0), "test_config.Example.rate = 0 is out of range: must be in (0, 1)"),
    (dict(discount=1.01), "test_config.Example.discount = 1.01 is out of range: must be in [0, 1]"),
    (dict(steps=0), "test_config.Example.steps = 0 is out of range: must be an int >= 1"),
    (dict(steps=2.0), "test_config.Example.steps = 2.0 is invalid: must be an int >= 1"),
    (dict(steps=True), "test_config.Example.steps = True is invalid: must be an int >= 1"),
    (dict(gap=math.inf), "test_config.Example.gap = inf is out of range: must be finite or None"),
    (dict(rate=None), "test_config.Example.rate = None is invalid: must be in (0, 1)"),
    (dict(kind="c"), "test_config.Example.kind = 'c' is out of range: must be one of 'a', 'b'"),
    (dict(on="yes"), "test_config.Example.on = 'yes' is invalid: must be True or False"),
    (dict(dims=(4, 0)), "test_config.Example.dims = (4, 0) is invalid: must be a tuple of ints >= 1"),
])
def test_messages_name_the_field_the_value_and_the_range(values, message):
    with pytest.raises(ConfigError) as err:
        Example(**values)
    assert str(err.value) == message


def test_valid_values_build_and_replace_is_checked_too():
    example = Example(rate=0.5, discount=0.0, steps=1, gap=-3.0, kind="b", on=False, dims=())
    assert (example.discount, example.dims) == (0.0, ())
    with pytest.raises(ConfigError, match="rate = 2"):
        dataclasses.replace(example, rate=2)


def test_the_issue_example_and_a_stored_config():
    iql = offrl.algos.get_algo("iql").config_cls
    with pytest.raises(ConfigError) as err:
        iql(expectile=1.5)
    assert str(err.value) == "iql.Config.expectile = 1.5 is out of range: must be in (0, 1)"
    stored = {**config_to_dict(iql()), "batch_size": 0}  # a hand-edited config.json of a run
    with pytest.raises(ConfigError, match=r"iql.Config.batch_size = 0 is out of range: must be an int >= 1"):
        config_from_dict(iql, stored)


@pytest.mark.parametrize("option, value, message", [
    ("steps", 0, "fit.steps = 0 is out of range: must be an int >= 1"),
    ("seeds", 0, "fit.seeds = 0 is out of range: must be an int >= 1"),
    ("chunk", -5, "fit.chunk = -5 is out of range: must be an int >= 1"),
    ("seed", -1, "fit.seed = -1 is out of range: must be an int >= 0"),
    ("eval_interval", 0, "fit.eval_interval = 0 is out of range: must be an int >= 1 or None"),
    ("eval_episodes", -1, "fit.eval_episodes = -1 is out of range: must be an int >= 0"),
    ("checkpoint_interval", 0, "fit.checkpoint_interval = 0 is out of range: must be an int >= 1 or None"),
    ("seed_strategy", "pmap", "fit.seed_strategy = 'pmap' is out of range: must be one of 'auto', 'vmap', 'map'"),
    ("reward_scaling", "log", "fit.reward_scaling = 'log' is out of range: must be one of 'none', 'iql_locomotion', 'minus_one' or None"),
])
def test_fit_checks_its_loop_options_before_loading_anything(option, value, message, tmp_path):
    config = offrl.algos.get_algo("bc").config_cls()
    with pytest.raises(ConfigError) as err:  # not a DatasetError: the options are checked first
        offrl.fit(config, str(tmp_path / "no-such-dataset.hdf5"), run_dir=tmp_path / "run", **{option: value})
    assert str(err.value) == message
    assert not (tmp_path / "run").exists()


def test_action_kind_mismatch_is_a_config_error_before_anything_compiles(tmp_path, monkeypatch):
    import offrl.train as train

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before the action kinds were compared")

    monkeypatch.setattr(train, "_compiled_init", no_compile)
    monkeypatch.setattr(train, "device_data", no_compile)
    with pytest.raises(ConfigError, match="needs discrete actions"):
        offrl.fit(offrl.algos.get_algo("cql_discrete").config_cls(), make_dataset(), steps=10, run_dir=tmp_path / "run")


def test_arrays_are_checked_per_element_and_traced_values_pass():
    """One value per population member is checked element by element; a config built inside jit
    (the known-answer tests vmap the expectile) holds tracers, which cannot be read and pass."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from offrl.algos import iql

    assert iql.Config(expectile=np.array([0.5, 0.9])).expectile.shape == (2,)
    with pytest.raises(ConfigError, match=r"iql.Config.expectile = array\(\[0.5, 1.5\]\) is out of range"):
        iql.Config(expectile=np.array([0.5, 1.5]))
    with pytest.raises(ConfigError, match="batch_size"):
        iql.Config(batch_size=np.array([64, 0]))
    built = jax.jit(lambda e: iql.Config(expectile=e).expectile * 2)(jnp.float32(0.7))
    assert float(built) == pytest.approx(1.4)
    assert jax.vmap(lambda e: iql.Config(expectile=e).expectile)(jnp.array([0.5, 0.9])).shape == (2,)
