"""``offrl export RUN_DIR --format onnx|stablehlo``: a trained policy as one standalone file.

The exported function is the agent's deterministic policy end to end, what
``offrl.load_agent(RUN_DIR).act(obs)`` returns: raw env observations ``[batch, obs_dim]`` float32 in,
actions in env units out (``[batch, act_dim]`` float32, or ``[batch]`` int64 action indices for a
discrete agent), with the observation normalisation, the algorithm's ``act`` and the action scaling
and clipping inside. Algorithms that act by sampling (BCQ, BEAR: argmax of Q over candidate actions)
sample with a fixed key when deterministic, so their policy is a stateless function of the
observations too.

Formats:

- ``onnx``: ``policy.onnx`` (opset 17), input ``observation``, output ``action``, any batch size.
  JAX's ``act`` is traced to a jaxpr and each primitive is written as ONNX nodes (a small translator
  for the primitives offrl's policies use: dense layers, activations, argmax, take-along-axis,
  concatenation, reshapes, ...). The parts that do not depend on the observations are evaluated
  here: weights become initialisers, and fixed sampling noise, which depends on the batch size only
  (each element's bits are a function of its flat index), becomes a table for up to ``max_batch``
  observations of which the graph takes the first ``batch`` rows.
- ``stablehlo``: ``policy.stablehlo``, a ``jax.export`` serialisation (StableHLO bytecode with its
  calling convention) with a symbolic batch dimension; run it with
  ``jax.export.deserialize(bytearray(data)).call(obs)``.

Each artifact gets a JSON card beside it (``policy.onnx.json``): algorithm, dataset, environment,
observation and action spaces, input/output names and shapes, the run's last evaluation score, and
the result of the check made after writing: the exported file is loaded back and its actions on a
batch of observations compared with ``Agent.act`` (within 1e-5, exactly for discrete actions).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from offrl.config import Checked, choice, flag, integer, text
from offrl.usage import parse_args

FORMATS = ("onnx", "stablehlo")
SUFFIX = {"onnx": ".onnx", "stablehlo": ".stablehlo"}
INPUT_NAME, OUTPUT_NAME = "observation", "action"
ONNX_OPSET = 17
#: Tolerance of the check made after export (actions in env units).
TOLERANCE = 1e-5


class ExportError(ValueError):
    """A policy that cannot be exported or whose exported file does not reproduce ``Agent.act``."""


# ----------------------------------------------------------------------------- the policy function


def policy_function(agent, seed_index: int = 0) -> Callable[[jax.Array], jax.Array]:
    """``obs [B, obs_dim] (env units) -> actions (env units)``: deterministic ``Agent.act`` as one jax function.

    Discrete agents return int32 indices [B] (the ONNX graph casts them to int64, as ``Agent.act``).
    """
    if agent.algo.stateful:
        raise ExportError(f"{agent.algo.name} is a sequence policy: its action depends on the history it carries between "
                          "steps, which a one-observation policy file cannot hold; use offrl.load_agent(RUN_DIR).act(obs, "
                          "reward=r) with agent.reset() per episode instead")
    if not 0 <= seed_index < agent.num_seeds:
        raise ExportError(f"seed index {seed_index} out of range: this checkpoint holds {agent.num_seeds} seeds")
    algo, config, transforms = agent.algo, agent.config, agent.transforms
    state = jax.tree.map(lambda x: jnp.asarray(x[seed_index]), agent.states)

    def policy(observations):
        unit = algo.act(config, state, transforms.normalize_obs(observations), jax.random.PRNGKey(0), True)
        return transforms.action_from_unit(unit)

    return policy


# ----------------------------------------------------------------------------- jaxpr, flattened

_CALLS = ("pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr",
          "remat", "checkpoint")


class _Lit(NamedTuple):
    value: np.ndarray  # with the literal's dtype


@dataclass
class _Eqn:
    prim: Any
    ins: list  # slot ids (int) or _Lit
    outs: list  # slot ids
    params: dict


@dataclass
class _Flat:
    """A jaxpr with every call (jit, custom_jvp, ...) inlined; values live in numbered slots."""

    avals: list
    consts: dict  # slot -> value
    eqns: list
    inp: int
    outs: list

    @classmethod
    def trace(cls, fn, obs_dim: int, batch: int) -> _Flat:
        closed = jax.make_jaxpr(fn)(jax.ShapeDtypeStruct((batch, obs_dim), jnp.float32))
        flat = cls([], {}, [], -1, [])
        inp = flat._slot(closed.jaxpr.invars[0].aval)
        flat.inp = inp
        flat.outs = flat._inline(closed.jaxpr, closed.consts, [inp])
        return flat

    def _slot(self, aval) -> int:
        self.avals.append(aval)
        return len(self.avals) - 1

    def _inline(self, jaxpr, consts, ins) -> list:
        env = {}
        for v, c in zip(jaxpr.constvars, consts):
            env[v] = self._slot(v.aval)
            self.consts[env[v]] = c

        def read(x):
            return _Lit(np.asarray(x.val, x.aval.dtype)) if isinstance(x, jax.extend.core.Literal) else env[x]

        env.update(zip(jaxpr.invars, ins))
        for eqn in jaxpr.eqns:
            args = [read(x) for x in eqn.invars]
            name = eqn.primitive.name
            sub = next((eqn.params[k] for k in ("jaxpr", "call_jaxpr", "fun_jaxpr") if k in eqn.params), None)
            if name in _CALLS and sub is not None:
                inner, inner_consts = (sub.jaxpr, sub.consts) if hasattr(sub, "consts") else (sub, [])
                outs = self._inline(inner, inner_consts, args)
            elif name == "scan":  # a sampler's reverse chain: unrolled, one copy of the body per step
                outs = self._unroll_scan(eqn, args)
            else:
                outs = [self._slot(v.aval) for v in eqn.outvars]
                self.eqns.append(_Eqn(eqn.primitive, args, outs, dict(eqn.params)))
            for v, o in zip(eqn.outvars, outs):
                env[v] = o
        return [read(v) for v in jaxpr.outvars]

    def _unroll_scan(self, eqn, args) -> list:
        """The carries after ``length`` inlined copies of a ``lax.scan`` body, each reading row i of the scanned
        inputs (a ``slice`` and a ``squeeze``). Scans that stack outputs are refused."""
        p = eqn.params
        n_consts, n_carry, body = p["num_consts"], p["num_carry"], p["jaxpr"]
        if len(eqn.outvars) > n_carry:
            raise ExportError("the policy uses a lax.scan that stacks per-step outputs, which the ONNX exporter does "
                              "not translate; export with --format stablehlo instead")
        consts, carry, xs = args[:n_consts], list(args[n_consts:n_consts + n_carry]), args[n_consts + n_carry:]
        steps = range(p["length"] - 1, -1, -1) if p["reverse"] else range(p["length"])
        for i in steps:
            rows = []
            for x in xs:
                aval = self.avals[x] if not isinstance(x, _Lit) else jax.core.get_aval(x.value)
                shape = tuple(aval.shape)
                one = self._slot(aval.update(shape=(1,) + shape[1:]))
                self.eqns.append(_Eqn(jax.lax.slice_p, [x], [one], dict(
                    start_indices=(i,) + (0,) * (len(shape) - 1), limit_indices=(i + 1,) + shape[1:], strides=None)))
                row = self._slot(aval.update(shape=shape[1:]))
                self.eqns.append(_Eqn(jax.lax.squeeze_p, [one], [row], dict(dimensions=(0,))))
                rows.append(row)
            carry = self._inline(body.jaxpr, body.consts, list(consts) + carry + rows)
        return carry

    def signature(self) -> list:
        return [(e.prim.name, len(e.ins), len(e.outs)) for e in self.eqns]


class _Dim(NamedTuple):
    """A dimension ``a * batch + c``."""

    a: int
    c: int

    def at(self, batch: int) -> int:
        return self.a * batch + self.c


# ----------------------------------------------------------------------------- jaxpr -> ONNX


_SMALL, _LARGE = 2, 3  # the batch sizes whose traces give each dimension's dependence on the batch

_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "tanh": "Tanh", "logistic": "Sigmoid", "sqrt": "Sqrt",
          "abs": "Abs", "sign": "Sign", "floor": "Floor", "ceil": "Ceil", "erf": "Erf", "sin": "Sin",
          "cos": "Cos", "not": "Not", "copy": "Identity", "copy_p": "Identity", "stop_gradient": "Identity",
          "optimization_barrier": "Identity"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow",
           "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal",
           "and": "And", "or": "Or", "add_any": "Add"}
_REDUCE = {"reduce_max": "ReduceMax", "reduce_min": "ReduceMin", "reduce_sum": "ReduceSum", "reduce_prod": "ReduceProd"}


def _onnx_dtype(dtype) -> int:
    from onnx import helper

    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        from onnx import TensorProto

        return TensorProto.BOOL
    return helper.np_dtype_to_tensor_dtype(dtype)


class _OnnxBuilder:
    def __init__(self, traces: dict[int, _Flat], values: dict[int, dict], max_batch: int, algo_name: str):
        self.traces, self.values, self.max_batch, self.algo_name = traces, values, max_batch, algo_name
        self.flat = traces[_SMALL]
        self.nodes, self.inits = [], []
        self.names: dict = {}
        self.counter = 0
        self.tables = 0
        self._dims: dict = {}

    # -- small helpers
    def fresh(self, hint: str = "t") -> str:
        self.counter += 1
        return f"{hint}{self.counter}"

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        from onnx import helper

        outs = [self.fresh() for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.fresh("n"), **attrs))
        return outs

    def one(self, op: str, inputs: list[str], **attrs) -> str:
        return self.node(op, inputs, 1, **attrs)[0]

    def const(self, value, dtype=None) -> str:
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype)
        name = self.fresh("c")
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def dims(self, slot: int) -> list[_Dim]:
        if slot not in self._dims:
            small = self.traces[_SMALL].avals[slot].shape
            large = self.traces[_LARGE].avals[slot].shape
            full = self.traces[self.max_batch].avals[slot].shape
            dims = []
            for s, l, f in zip(small, large, full):
                a = (l - s) // (_LARGE - _SMALL)
                d = _Dim(a, s - a * _SMALL)
                if d.at(_LARGE) != l or d.at(self.max_batch) != f:
                    raise ExportError(f"{self.algo_name}: a dimension of the policy's computation is not linear in the "
                                      f"batch size ({s}, {l}, {f} at batch {_SMALL}, {_LARGE}, {self.max_batch}); "
                                      "such a policy cannot be exported to ONNX")
                dims.append(d)
            self._dims[slot] = dims
        return self._dims[slot]

    def dim_tensor(self, d: _Dim) -> str:
        key = ("dim", d)
        if key not in self.names:
            if d.a == 0:
                self.names[key] = self.const([d.c], np.int64)
            else:
                t = self.batch if d.a == 1 else self.one("Mul", [self.batch, self.const([d.a], np.int64)])
                self.names[key] = t if d.c == 0 else self.one("Add", [t, self.const([d.c], np.int64)])
        return self.names[key]

    def shape_tensor(self, dims: list[_Dim]) -> str:
        if all(d.a == 0 for d in dims):
            return self.const([d.c for d in dims], np.int64)
        return self.one("Concat", [self.dim_tensor(d) for d in dims], axis=0)

    # -- values
    def name(self, atom) -> str:
        """The ONNX tensor of a slot or literal, materialising values known here (weights, fixed noise)."""
        if isinstance(atom, _Lit):
            return self.const(atom.value)
        if atom in self.names:
            return self.names[atom]
        aval = self.flat.avals[atom]
        if not isinstance(aval.dtype, np.dtype):
            raise ExportError(f"{self.algo_name}: a random key is used by the observation-dependent part of the policy; "
                              "it cannot be exported")
        dims = self.dims(atom)
        if all(d.a == 0 for d in dims):
            name = self.const(np.asarray(self.values[_SMALL][atom]))
        else:
            name = self._table(atom, dims)
        self.names[atom] = name
        return name

    def _table(self, slot: int, dims: list[_Dim]) -> str:
        """A value that depends on the batch size only (fixed sampling noise): the first rows of a table."""
        full = np.asarray(self.values[self.max_batch][slot]).reshape(-1)
        for b in (_SMALL, _LARGE):
            part = np.asarray(self.values[b][slot]).reshape(-1)
            if not np.array_equal(full[: part.size], part):
                raise ExportError(f"{self.algo_name}: a part of the policy that does not depend on the observations "
                                  "changes with the batch size in a way the exporter cannot tabulate "
                                  "(e.g. sampling noise whose elements are not a function of their index)")
        self.tables += 1
        count = self.dim_tensor(dims[0])
        for d in dims[1:]:
            count = self.one("Mul", [count, self.dim_tensor(d)])
        rows = self.one("Slice", [self.const(full), self.const([0], np.int64), count, self.const([0], np.int64)])
        return self.one("Reshape", [rows, self.shape_tensor(dims)])

    # -- the graph
    def build(self, obs_dim: int, discrete: bool, doc: str):
        from onnx import TensorProto, helper

        flat = self.flat
        dependent = {flat.inp}
        self.names[flat.inp] = INPUT_NAME
        self.batch = self.one("Shape", [INPUT_NAME], start=0, end=1)
        for index, e in enumerate(flat.eqns):
            if not any(not isinstance(x, _Lit) and x in dependent for x in e.ins):
                continue  # evaluated here (weights, keys, noise): materialised when a dependent op reads it
            dependent.update(e.outs)
            outs = self.emit(e, index)
            for slot, name in zip(e.outs, outs):
                self.names[slot] = name
        (out,) = flat.outs
        result = self.name(out)
        out_dims = self.dims(out) if not isinstance(out, _Lit) else []
        if discrete:
            result = self.one("Cast", [result], to=TensorProto.INT64)
            out_type = TensorProto.INT64
        else:
            result = self.one("Cast", [result], to=TensorProto.FLOAT)
            out_type = TensorProto.FLOAT
        self.nodes.append(helper.make_node("Identity", [result], [OUTPUT_NAME], name=self.fresh("n")))
        out_shape = ["batch" if d.a else d.c for d in out_dims]
        graph = helper.make_graph(
            self.nodes, "offrl_policy",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", obs_dim])],
            [helper.make_tensor_value_info(OUTPUT_NAME, out_type, out_shape)],
            initializer=self.inits, doc_string=doc,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="offrl")
        model.ir_version = 8  # opset 17's IR version: readable by older runtimes too
        return model

    def emit(self, e: _Eqn, index: int) -> list[str]:
        name, p = e.prim.name, e.params
        x = [self.name(a) for a in e.ins]
        out_dims = [self.dims(o) for o in e.outs]
        in_avals = [self.flat.avals[a] if not isinstance(a, _Lit) else None for a in e.ins]
        if name in _UNARY:
            return [self.one(_UNARY[name], x)]
        if name in _BINARY:
            return [self.one(_BINARY[name], x)]
        if name == "ne":
            return [self.one("Not", [self.one("Equal", x)])]
        if name == "rsqrt":
            return [self.one("Reciprocal", [self.one("Sqrt", x)])]
        if name == "log1p":
            return [self.one("Log", [self.one("Add", [x[0], self.const(np.ones((), self.flat.avals[e.outs[0]].dtype))])])]
        if name == "expm1":
            return [self.one("Sub", [self.one("Exp", x), self.const(np.ones((), self.flat.avals[e.outs[0]].dtype))])]
        if name == "square":
            return [self.one("Mul", [x[0], x[0]])]
        if name == "integer_pow":
            y = int(p["y"])
            if y < 1:
                raise ExportError(f"{self.algo_name}: integer_pow with exponent {y} is not supported by the exporter")
            acc = x[0]
            for _ in range(y - 1):
                acc = self.one("Mul", [acc, x[0]])
            return [acc]
        if name == "clamp":  # clamp(lo, x, hi)
            return [self.one("Min", [self.one("Max", [x[1], x[0]]), x[2]])]
        if name == "select_n":
            if len(x) != 3 or in_avals[0] is not None and in_avals[0].dtype != np.bool_:
                raise ExportError(f"{self.algo_name}: select_n with {len(x) - 1} cases is not supported by the exporter")
            return [self.one("Where", [x[0], x[2], x[1]])]
        if name == "convert_element_type":
            return [self.one("Cast", x, to=_onnx_dtype(p["new_dtype"]))]
        if name in ("reshape", "squeeze", "expand_dims"):
            if name == "reshape" and p.get("dimensions") is not None:
                raise ExportError(f"{self.algo_name}: reshape with a dimension order is not supported by the exporter")
            return [self.one("Reshape", [x[0], self.shape_tensor(out_dims[0])])]
        if name == "broadcast_in_dim":
            operand = self.dims(e.ins[0]) if not isinstance(e.ins[0], _Lit) else []
            inter = [_Dim(0, 1)] * len(out_dims[0])
            for j, axis in enumerate(p["broadcast_dimensions"]):
                inter[axis] = operand[j]
            shaped = self.one("Reshape", [x[0], self.shape_tensor(inter)])
            return [self.one("Expand", [shaped, self.shape_tensor(out_dims[0])])]
        if name == "transpose":
            return [self.one("Transpose", x, perm=list(p["permutation"]))]
        if name == "concatenate":
            return [self.one("Concat", x, axis=int(p["dimension"]))]
        if name == "split":
            sizes = self.const([d[int(p["axis"])].c for d in out_dims], np.int64)
            if any(d[int(p["axis"])].a for d in out_dims):
                raise ExportError(f"{self.algo_name}: a split along the batch axis is not supported by the exporter")
            return self.node("Split", [x[0], sizes], len(e.outs), axis=int(p["axis"]))
        if name == "slice":
            return [self._slice(e, index, x[0])]
        if name == "dot_general":
            return [self._dot_general(e, x, in_avals)]
        if name in _REDUCE:
            axes = [int(a) for a in p["axes"]]
            if name == "reduce_sum":
                return [self.one("ReduceSum", [x[0], self.const(axes, np.int64)], keepdims=0)]
            return [self.one(_REDUCE[name], x, axes=axes, keepdims=0)]
        if name in ("argmax", "argmin"):
            (axis,) = p["axes"]
            idx = self.one("ArgMax" if name == "argmax" else "ArgMin", x, axis=int(axis), keepdims=0)
            return [self.one("Cast", [idx], to=_onnx_dtype(p["index_dtype"]))]
        if name == "gather":
            return [self._gather(e, x, in_avals)]
        raise ExportError(f"{self.algo_name}: the policy uses the JAX primitive {name!r}, which the ONNX exporter "
                          "does not translate; export with --format stablehlo instead")

    def _slice(self, e: _Eqn, index: int, x: str) -> str:
        p = e.params
        if p.get("strides") not in (None, (1,) * len(p["start_indices"])):
            raise ExportError(f"{self.algo_name}: a strided slice is not supported by the exporter")
        per_trace = {b: self.traces[b].eqns[index].params for b in (_SMALL, _LARGE)}

        def dims_of(key):
            out = []
            for s, l in zip(per_trace[_SMALL][key], per_trace[_LARGE][key]):
                a = (l - s) // (_LARGE - _SMALL)
                out.append(_Dim(a, s - a * _SMALL))
            return out

        starts, limits = dims_of("start_indices"), dims_of("limit_indices")
        return self.one("Slice", [x, self.shape_tensor(starts), self.shape_tensor(limits),
                                  self.const(list(range(len(starts))), np.int64)])

    def _dot_general(self, e: _Eqn, x: list[str], avals) -> str:
        (lc, rc), (lb, rb) = e.params["dimension_numbers"]
        lr, rr = len(avals[0].shape), len(avals[1].shape)
        if not lb and not rb and tuple(lc) == (lr - 1,) and tuple(rc) == (0,) and rr == 2:
            out = self.one("MatMul", x)
        else:  # the general case: an einsum whose output order is batch, lhs free, rhs free (as dot_general's)
            letters = iter("abcdefghijklmnopqrstuvwxyz")
            ls = [next(letters) for _ in range(lr)]
            rs = [None] * rr
            for i, j in zip(lb, rb):
                rs[j] = ls[i]
            for i, j in zip(lc, rc):
                rs[j] = ls[i]
            rs = [s or next(letters) for s in rs]
            out_s = [ls[i] for i in lb] + [ls[i] for i in range(lr) if i not in lb and i not in lc] + \
                    [rs[j] for j in range(rr) if j not in rb and j not in rc]
            out = self.one("Einsum", x, equation=f"{''.join(ls)},{''.join(rs)}->{''.join(out_s)}")
        want = self.flat.avals[e.outs[0]].dtype
        if avals[0].dtype != want:
            out = self.one("Cast", [out], to=_onnx_dtype(want))
        return out

    def _gather(self, e: _Eqn, x: list[str], avals) -> str:
        """The gather of ``jnp.take_along_axis``: ONNX GatherElements."""
        p = e.params
        dn = p["dimension_numbers"]
        operand, indices = avals
        rank = len(operand.shape)
        supported = (
            len(dn.start_index_map) == 1 and tuple(dn.collapsed_slice_dims) == tuple(dn.start_index_map)
            and indices is not None and indices.shape[-1] == 1
            and len(indices.shape) - 1 + len(dn.offset_dims) == rank
        )
        if supported:
            axis = dn.start_index_map[0]
            # output dim k must be operand dim k: indices' leading dims are operand's batching dims and the axis,
            # in operand order, and offset dims are the remaining (fully sliced) operand dims at their own positions
            batching = dict(zip(dn.start_indices_batching_dims, dn.operand_batching_dims))
            non_offset = [k for k in range(rank) if k not in dn.offset_dims]
            idx_dims = list(range(len(indices.shape) - 1))
            mapping = {k: (batching.get(i, axis)) for k, i in zip(non_offset, idx_dims)}
            offset_operand = [k for k in range(rank) if k != axis and k not in dn.operand_batching_dims]
            mapping.update(zip(dn.offset_dims, offset_operand))
            supported = all(mapping.get(k) == k for k in range(rank)) and all(
                p["slice_sizes"][k] == operand.shape[k] for k in offset_operand) and sum(
                1 for i in idx_dims if i not in batching) == 1
        if not supported:
            raise ExportError(f"{self.algo_name}: a gather other than take_along_axis is not supported by the exporter")
        index_dims = iter(self.dims(e.ins[1])[:-1])
        inter = [_Dim(0, 1) if k in dn.offset_dims else next(index_dims) for k in range(rank)]
        idx = self.one("Reshape", [x[1], self.shape_tensor(inter)])
        idx = self.one("Cast", [idx], to=_onnx_dtype(np.int64))
        idx = self.one("Expand", [idx, self.shape_tensor(self.dims(e.outs[0]))])
        return self.one("GatherElements", [x[0], idx], axis=int(axis))


def _dependent(flat: _Flat) -> set[int]:
    """The slots that depend on the observations."""
    dependent = {flat.inp}
    for e in flat.eqns:
        if any(not isinstance(x, _Lit) and x in dependent for x in e.ins):
            dependent.update(e.outs)
    return dependent


def _known_inputs(flat: _Flat) -> set[int]:
    """Slots that do not depend on the observations but are read by a part that does (or are the output)."""
    dependent = _dependent(flat)
    reads = {x for e in flat.eqns if e.outs[0] in dependent for x in e.ins if not isinstance(x, _Lit)}
    reads.update(x for x in flat.outs if not isinstance(x, _Lit))
    return {x for x in reads - dependent if isinstance(flat.avals[x].dtype, np.dtype)}


def _evaluate_known(flat: _Flat, wanted: set[int]) -> dict:
    """Values of the ``wanted`` slots, which do not depend on the observations (weights, fixed noise),
    computed in one compiled call."""
    dependent = _dependent(flat)
    computed = sorted(wanted - set(flat.consts))

    def run():
        values = dict(flat.consts)
        for e in flat.eqns:
            if e.outs[0] in dependent:
                continue
            args = [jnp.asarray(x.value) if isinstance(x, _Lit) else values[x] for x in e.ins]
            out = e.prim.bind(*args, **e.params)
            values.update(zip(e.outs, out if e.prim.multiple_results else [out]))
        return [values[s] for s in computed]

    results = jax.jit(run)() if computed else []
    values = {s: flat.consts[s] for s in wanted if s in flat.consts}
    values.update(zip(computed, (np.asarray(v) for v in results)))
    return values


def to_onnx(policy: Callable, obs_dim: int, *, discrete: bool, max_batch: int = 1024, name: str = "policy", doc: str = ""):
    """The ONNX model (``onnx.ModelProto``) of ``policy`` (see the module docstring); returns ``(model, batch_limited)``.

    ``batch_limited`` is True when the graph holds a table of fixed noise, so a call takes at most
    ``max_batch`` observations.
    """
    if max_batch <= _LARGE:
        raise ExportError(f"max_batch must be > {_LARGE}, got {max_batch}")
    traces = {b: _Flat.trace(policy, obs_dim, b) for b in (_SMALL, _LARGE, max_batch)}
    if len({tuple(t.signature()) for t in traces.values()}) != 1:
        raise ExportError(f"{name}: the policy's computation differs between batch sizes; it cannot be exported to ONNX")
    wanted = _known_inputs(traces[_SMALL])
    per_batch = {s for s in wanted if traces[_SMALL].avals[s].shape != traces[_LARGE].avals[s].shape}
    values = {b: _evaluate_known(t, wanted if b == _SMALL else per_batch) for b, t in traces.items()}
    builder = _OnnxBuilder(traces, values, max_batch, name)
    model = builder.build(obs_dim, discrete, doc)
    return model, builder.tables > 0


def to_stablehlo(policy: Callable, obs_dim: int, platforms: tuple[str, ...] | None = None) -> bytes:
    """``jax.export`` serialisation of ``policy`` with a symbolic batch dimension."""
    from jax import export as jax_export

    (batch,) = jax_export.symbolic_shape("batch")
    exported = jax_export.export(jax.jit(policy), platforms=platforms)(jax.ShapeDtypeStruct((batch, obs_dim), jnp.float32))
    return bytes(exported.serialize())


# ----------------------------------------------------------------------------- running the files


def onnx_runner(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """``obs -> actions`` with onnxruntime on an exported ``policy.onnx``."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("running an ONNX policy needs onnxruntime: pip install 'offrl[export]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda obs: session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(obs, np.float32)})[0]


def stablehlo_runner(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """``obs -> actions`` with ``jax.export.deserialize`` on an exported ``policy.stablehlo``."""
    from jax import export as jax_export

    exported = jax_export.deserialize(bytearray(Path(path).read_bytes()))
    return lambda obs: np.asarray(exported.call(jnp.asarray(obs, jnp.float32)))


RUNNERS = {"onnx": onnx_runner, "stablehlo": stablehlo_runner}


def _check(agent, seed_index: int, run: Callable, batch: int, seed: int = 0) -> float:
    """Largest difference between ``run`` and ``agent.act`` on ``batch`` observations (and on one)."""
    t = agent.transforms
    obs_dim = agent.meta["spec"]["obs_dim"]
    rng = np.random.default_rng(seed)
    obs = (t.obs_mean + t.obs_std * rng.normal(size=(batch, obs_dim))).astype(np.float32)
    worst = 0.0
    for o in (obs, obs[:1]):
        want = agent.act(o, seed_index=seed_index)
        got = np.asarray(run(o))
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ExportError(f"the exported policy returns {got.dtype}{list(got.shape)} where Agent.act returns "
                              f"{want.dtype}{list(want.shape)}")
        if agent.transforms.is_discrete:
            worst = max(worst, float(np.count_nonzero(got != want)))
        else:
            worst = max(worst, float(np.max(np.abs(got - want) / (1.0 + np.abs(want)))))
    return worst


# ----------------------------------------------------------------------------- the command


def _score(run_dir: Path, seed_index: int) -> dict | None:
    from offrl.logger import read_jsonl

    rows = read_jsonl(run_dir / "eval.jsonl") if (run_dir / "eval.jsonl").exists() else []
    if not rows:
        return None
    last = rows[-1]
    score = {"step": last.get("step")}
    for key, per_seed in (("normalized_score", "per_seed_scores"), ("return_mean", "per_seed_returns")):
        values = last.get(per_seed)
        if values is not None and seed_index < len(values):
            score[key] = values[seed_index]
        elif last.get(key) is not None:
            score[key] = last[key]
    return score


def export_policy(path: str | os.PathLike, format: str = "onnx", out: str | os.PathLike | None = None, *,
                  seed_index: int = 0, max_batch: int = 1024, verify: bool = True, agent=None) -> Path:
    """Export the policy of a run folder (or ``checkpoint.msgpack``) to ``out`` (default: ``RUN_DIR/policy.onnx``
    or ``RUN_DIR/policy.stablehlo``) and write its card to ``out + ".json"``; returns ``out``.

    ``verify``: load the written file back and compare its actions with ``Agent.act`` on a batch of
    observations drawn around the dataset's mean; an :class:`ExportError` if they differ. ``agent``:
    an already loaded agent of ``path`` (saves loading it again).
    """
    from offrl import __version__
    from offrl.agent import load_agent
    from offrl.checkpoint import atomic_write_bytes

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    path = Path(path)
    agent = agent if agent is not None else load_agent(path)
    run_dir = path if path.is_dir() else path.parent
    out = Path(out) if out is not None else run_dir / f"policy{SUFFIX[format]}"
    spec = agent.meta["spec"]
    obs_dim, discrete = int(spec["obs_dim"]), agent.transforms.is_discrete
    policy = policy_function(agent, seed_index)
    info = agent.dataset_info
    card: dict[str, Any] = {
        "format": format, "file": out.name, "offrl_version": __version__,
        "algorithm": agent.algo.name, "algo_config": agent.meta.get("algo_config"),
        "dataset": info.name, "dataset_source": agent.meta.get("dataset_source"),
        "env_id": info.env_id, "env_kwargs": info.env_kwargs or {},
        "step": agent.step, "seed_index": seed_index, "score": _score(run_dir, seed_index),
        "policy": "deterministic; observation normalisation, action scaling and clipping are inside",
        "input": {"name": INPUT_NAME, "shape": ["batch", obs_dim], "dtype": "float32",
                  "space": {"type": "Box", "shape": [obs_dim]}},
    }
    if discrete:
        n = int(agent.transforms.num_actions)
        card["output"] = {"name": OUTPUT_NAME, "shape": ["batch"], "dtype": "int64" if format == "onnx" else "int32",
                          "space": {"type": "Discrete", "n": n}}
    else:
        low, high = agent.transforms.action_low, agent.transforms.action_high
        card["output"] = {"name": OUTPUT_NAME, "shape": ["batch", len(low)], "dtype": "float32",
                          "space": {"type": "Box", "shape": [len(low)], "low": low.tolist(), "high": high.tolist()}}
    if format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ExportError("ONNX export needs the onnx package: pip install 'offrl[export]'") from None
        model, limited = to_onnx(policy, obs_dim, discrete=discrete, max_batch=max_batch, name=agent.algo.name,
                                 doc=f"offrl {agent.algo.name} policy: {INPUT_NAME} [batch, {obs_dim}] -> {OUTPUT_NAME}")
        card.update(opset=ONNX_OPSET, max_batch=max_batch if limited else None)
        data = model.SerializeToString()
    else:
        data = to_stablehlo(policy, obs_dim)
        card.update(max_batch=None, platforms=[jax.default_backend()],
                    load="jax.export.deserialize(bytearray(open(path, 'rb').read())).call(observations)")
        if discrete:
            card["output"]["note"] = "int32 indices (JAX's default integer width); Agent.act returns int64"
    checked: dict = {}

    def check_before_replacing(tmp: Path) -> None:
        """The written file, loaded back, acts as Agent.act (else it never replaces ``out``)."""
        run = RUNNERS[format](tmp)
        if format == "stablehlo" and discrete:
            inner = run
            run = lambda obs: inner(obs).astype(np.int64)  # noqa: E731
        checked["observations"] = min(64, max_batch)
        checked["max_difference"] = error = _check(agent, seed_index, run, checked["observations"])
        if error > (0.0 if discrete else TOLERANCE):
            what = f"{int(error)} actions differ" if discrete else f"actions differ by {error:.3g} (relative)"
            raise ExportError(f"the exported {format} policy of {path} does not reproduce Agent.act ({what}); "
                              f"{out} was not written; export with the other format or report this")

    atomic_write_bytes(out, data, before_replace=check_before_replacing if verify else None)
    card["verified"] = {**checked, "against": "offrl.load_agent(RUN_DIR).act(obs, seed_index)"} if verify else None
    atomic_write_bytes(Path(f"{out}.json"), (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return out


@dataclass(frozen=True)
class ExportArgs(Checked):
    """Export a trained policy as one standalone file (ONNX or a jax.export StableHLO artifact) plus a JSON card."""

    run: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="RUN_DIR")]]
    """Run folder or checkpoint.msgpack file."""
    format: Literal["onnx", "stablehlo"] = choice("onnx")
    """onnx (policy.onnx, for onnxruntime and others) or stablehlo (policy.stablehlo, jax.export serialised)."""
    out: Optional[str] = text(None, optional=True)
    """Output file (default: RUN/policy.onnx or RUN/policy.stablehlo); the card goes to OUT.json."""
    seed_index: int = integer(0, ge=0)
    """Which of the run's seeds to export."""
    max_batch: int = integer(1024, ge=4)
    """Largest batch of an ONNX policy that samples fixed noise (BCQ, BEAR); other policies take any batch."""
    verify: bool = flag(True)
    """Load the written file back and check its actions against Agent.act."""


def main(argv: list[str]) -> int:
    args = parse_args(ExportArgs, argv, "offrl export")
    out = export_policy(args.run, args.format, args.out, seed_index=args.seed_index, max_batch=args.max_batch,
                        verify=args.verify)
    card = json.loads(Path(f"{out}.json").read_text())
    checked = f"; matches Agent.act on {card['verified']['observations']} observations" if card["verified"] else ""
    print(f"wrote {out} ({card['algorithm']}, {card['input']['name']} {card['input']['shape']} -> "
          f"{card['output']['name']} {card['output']['shape']}){checked}\n  card: {out}.json")
    return 0
