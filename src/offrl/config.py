"""Valid ranges of config fields, declared next to each field and checked when a config is built.

An algorithm's ``Config`` (and any other settings dataclass) subclasses :class:`Checked` and gives
every field its default through one of the helpers below, which puts the field's valid range in its
``dataclasses.field`` metadata::

    @dataclass(frozen=True)
    class Config(Checked):
        expectile: float = number(0.7, gt=0, lt=1)
        \"\"\"Expectile tau of the value loss.\"\"\"
        batch_size: int = integer(256, ge=1)
        \"\"\"Transitions per gradient step.\"\"\"
        hidden_dims: tuple[int, ...] = sizes((256, 256))
        \"\"\"Hidden layer sizes.\"\"\"
        policy: Literal["deterministic", "gaussian"] = choice("deterministic")
        \"\"\"Policy class (the valid values are the Literal's).\"\"\"
        cosine_actor_lr: bool = flag(True)
        \"\"\"Decay the actor learning rate.\"\"\"
        target_entropy: Optional[float] = number(None, optional=True)
        \"\"\"Any finite number, or None.\"\"\"

Building the config (from Python, from ``offrl train``'s options, from a stored run's
``config.json``, or ``dataclasses.replace``) runs :func:`check_config`, which raises
:class:`ConfigError` (a ``ValueError``) naming the field, the value and the valid range::

    iql.Config.expectile = 1.5 is out of range: must be in (0, 1)

Numbers must also be finite. Rules that tie several fields together stay in the algorithm
(e.g. BEAR's ``log_alpha_min <= log_alpha_max``) and raise :class:`ConfigError` too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np

METADATA_KEY = "offrl.valid"
KINDS = ("number", "integer", "choice", "flag", "sizes", "indices", "vector")


class ConfigError(ValueError):
    """A config or option value the user chose is outside its valid range (a user error, not a bug)."""


@dataclass(frozen=True)
class Valid:
    """The valid values of one field: what :func:`check_config` checks and the message it gives."""

    kind: Literal["number", "integer", "choice", "flag", "sizes", "indices", "vector", "text"]
    gt: Optional[float] = None
    ge: Optional[float] = None
    lt: Optional[float] = None
    le: Optional[float] = None
    choices: Optional[tuple] = None
    optional: bool = False

    def describe(self, choices: Optional[tuple] = None) -> str:
        """The valid range in words, e.g. ``in (0, 1]``, ``an int >= 1``, ``one of 'a', 'b'``."""
        if self.kind == "flag":
            text = "True or False"
        elif self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in (choices or self.choices or ()))
        elif self.kind == "sizes":
            text = "a tuple of ints >= 1"
        elif self.kind == "indices":
            text = "a non-empty tuple of distinct ints >= 0"
        elif self.kind == "vector":
            text = "a non-empty tuple of finite numbers"
        elif self.kind == "text":
            text = "a string"
        else:
            text = self._bounds() or "finite"
            if self.kind == "integer":
                text = "an int" + ("" if text == "finite" else " " + text)
        return text + (" or None" if self.optional else "")

    def _bounds(self) -> str:
        low = (f"({_num(self.gt)}" if self.gt is not None else f"[{_num(self.ge)}" if self.ge is not None else None)
        high = (f"{_num(self.lt)})" if self.lt is not None else f"{_num(self.le)}]" if self.le is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>' if self.gt is not None else '>='} {low[1:]}"
        if high:
            return f"{'<' if self.lt is not None else '<='} {high[:-1]}"
        return ""

    def problem(self, value: Any, choices: Optional[tuple] = None) -> Optional[str]:
        """None when ``value`` is valid, else ``"invalid"`` (wrong type) or ``"out of range"``.

        An array (e.g. one value per population member) is checked element by element; a traced
        value (a config built inside ``jit``/``vmap``) cannot be read and passes: its concrete values
        were checked where they were made."""
        if self.kind in ("number", "integer") and _is_array(value):
            try:
                elements = np.asarray(value).reshape(-1).tolist()
            except Exception:  # a JAX tracer: no concrete value here
                return None
            return next((p for p in (self.problem(x, choices) for x in elements) if p is not None), None)
        if value is None:
            return None if self.optional else "invalid"
        if self.kind == "flag":
            return None if isinstance(value, bool) else "invalid"
        if self.kind == "choice":
            return None if value in (choices or self.choices or ()) else "out of range"
        if self.kind == "text":
            return None if isinstance(value, str) else "invalid"
        if self.kind == "sizes":
            ok = isinstance(value, tuple) and all(_is_int(v) and v >= 1 for v in value)
            return None if ok else "invalid"
        if self.kind == "indices":
            ok = (isinstance(value, tuple) and len(value) > 0 and len(set(value)) == len(value)
                  and all(_is_int(v) and v >= 0 for v in value))
            return None if ok else "invalid"
        if self.kind == "vector":
            ok = (isinstance(value, tuple) and len(value) > 0
                  and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value))
            return None if ok else "invalid"
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or (self.kind == "integer" and not _is_int(value)):
            return "invalid"
        inside = (math.isfinite(value)
                  and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                  and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))
        return None if inside else "out of range"


def _num(x: float) -> str:
    return f"{x:g}"


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, numbers.Number)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _field(default: Any, valid: Valid) -> Any:
    return dataclasses.field(default=default, metadata={METADATA_KEY: valid})


def number(default: Optional[float], *, gt: Optional[float] = None, ge: Optional[float] = None, lt: Optional[float] = None,
           le: Optional[float] = None, optional: bool = False) -> Any:
    """A finite real number within the given bounds (``gt``/``ge`` below, ``lt``/``le`` above; None: unbounded)."""
    return _field(default, Valid("number", gt=gt, ge=ge, lt=lt, le=le, optional=optional))


def integer(default: Optional[int], *, gt: Optional[int] = None, ge: Optional[int] = None, lt: Optional[int] = None,
            le: Optional[int] = None, optional: bool = False) -> Any:
    """An int within the given bounds (e.g. ``integer(256, ge=1)`` for a batch size)."""
    return _field(default, Valid("integer", gt=gt, ge=ge, lt=lt, le=le, optional=optional))


def choice(default: Any, choices: Optional[tuple] = None, *, optional: bool = False) -> Any:
    """One of ``choices``; without them, one of the values of the field's ``Literal[...]`` annotation."""
    return _field(default, Valid("choice", choices=None if choices is None else tuple(choices), optional=optional))


def flag(default: Optional[bool], *, optional: bool = False) -> Any:
    """A bool."""
    return _field(default, Valid("flag", optional=optional))


def sizes(default: tuple) -> Any:
    """A tuple of ints >= 1, e.g. hidden layer sizes (empty: no hidden layer)."""
    return _field(tuple(default), Valid("sizes"))


def indices(default: tuple) -> Any:
    """A non-empty tuple of distinct ints >= 0, e.g. the observation dimensions that make a goal."""
    return _field(tuple(default), Valid("indices"))


def vector(default: Optional[tuple], *, optional: bool = False) -> Any:
    """A non-empty tuple of finite numbers (e.g. a goal in env units), or None when ``optional``."""
    return _field(None if default is None else tuple(default), Valid("vector", optional=optional))


def text(default: Optional[str], *, optional: bool = False) -> Any:
    """A string whose meaning the code checks itself (a path, a ``module:function`` name, ...)."""
    return _field(default, Valid("text", optional=optional))


def declared(f: dataclasses.Field) -> Optional[Valid]:
    """The valid range declared for a dataclass field, or None when it has none."""
    return f.metadata.get(METADATA_KEY)


@functools.lru_cache(maxsize=None)
def literal_choices(cls: type) -> dict[str, tuple]:
    """The values of each ``Literal[...]`` (or ``Optional[Literal[...]]``) field annotation of ``cls``."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        for arg in (hint, *typing.get_args(hint)):
            if typing.get_origin(arg) is Literal:
                out[name] = typing.get_args(arg)
    return out


def config_name(config_or_cls: Any) -> str:
    """``iql.Config`` for ``offrl.algos.iql.Config`` (the module's last part and the class name), or the
    class's own ``_label`` (a plain class attribute: ``"fit"`` for the training loop's options, ``""`` for
    a command's options, whose messages then start with the field's name)."""
    cls = config_or_cls if isinstance(config_or_cls, type) else type(config_or_cls)
    label = getattr(cls, "_label", None)
    return label if label is not None else f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"


def check_value(where: str, valid: Valid, value: Any, choices: Optional[tuple] = None) -> None:
    """Raise :class:`ConfigError` (``WHERE = VALUE is out of range: must be ...``) for an invalid value."""
    problem = valid.problem(value, choices)
    if problem is not None:
        raise ConfigError(f"{where} = {value!r} is {problem}: must be {valid.describe(choices)}")


def check_config(config: Any) -> None:
    """Check every field of a dataclass instance that declares a valid range; raise on the first bad one."""
    cls = type(config)
    for f in dataclasses.fields(config):
        valid = declared(f)
        if valid is None:
            continue
        choices = valid.choices or (literal_choices(cls).get(f.name) if valid.kind == "choice" else None)
        name = config_name(cls)
        check_value(f"{name}.{f.name}" if name else f.name, valid, getattr(config, f.name), choices)


class Checked:
    """Base of a dataclass whose fields are checked against their declared ranges when it is built."""

    def __post_init__(self) -> None:
        check_config(self)
