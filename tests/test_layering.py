"""The import graph of offrl's packages points downwards: read from the source with ``ast``.

Units are offrl's subpackages (``data``, ``envs``, ``datasets``, ``nets``, ...) and its top-level
modules (``evaluate``, ``checkpoint``, ``train``, ...). Every import counts, also those inside
functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import offrl

SRC = Path(offrl.__file__).parent
PACKAGES = sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
MODULES = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in ("__init__", "__main__"))


def _unit_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _module_name(path: Path) -> list[str]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = ["offrl", *rel.parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported_units(path: Path) -> set[str]:
    """The offrl units that the file at ``path`` imports (absolute and relative imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package[:-1]
    names: list[list[str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (package[:len(package) - node.level + 1] if node.level else [])
            base = base + (node.module.split(".") if node.module else [])
            if base == ["offrl"]:  # from offrl import envs / __version__
                names += [["offrl", a.name] for a in node.names]
            else:
                names.append(base)
    units = set()
    for parts in names:
        if parts[0] == "offrl" and len(parts) > 1 and parts[1] in PACKAGES + MODULES:
            units.add(parts[1])
    return units - {_unit_of(path)}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {u: set() for u in PACKAGES + MODULES}
    for path in SRC.rglob("*.py"):
        if path.stem == "__main__" and path.parent == SRC:
            continue
        if path.parent == SRC and path.stem == "__init__":
            continue  # the root package's lazy attribute table
        graph[_unit_of(path)] |= _imported_units(path)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """Known answer on a small package: function-level, relative and ``from offrl import X`` imports count."""
    root = tmp_path / "offrl"
    files = {
        "a/__init__.py": "from .x import f\n",
        "a/x.py": "def f():\n    from ..b import g\n    return g\n",
        "b/__init__.py": "import numpy\nfrom offrl import __version__\n",
        "c/__init__.py": "from offrl import top\nimport offrl.a.x\n",
        "top.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "SRC", root)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ["a", "b", "c"])
    monkeypatch.setattr(sys.modules[__name__], "MODULES", ["top"])
    assert import_graph() == {"a": {"b"}, "b": set(), "c": {"a", "top"}, "top": set()}
    # and on offrl itself: a reference-score measurement imports the evaluation loop inside a function
    monkeypatch.undo()
    assert "evaluate" in import_graph()["datasets"]


def test_data_knows_no_environment_and_envs_no_data():
    graph = import_graph()
    above_data = {"envs", "datasets", "evaluate", "checkpoint", "train", "agent", "algos"}
    assert not graph["data"] & above_data, f"offrl.data imports {sorted(graph['data'] & above_data)}"
    forbidden_for_envs = {"data", "datasets", "evaluate", "checkpoint", "train", "agent", "algos"}
    assert not graph["envs"] & forbidden_for_envs, f"offrl.envs imports {sorted(graph['envs'] & forbidden_for_envs)}"
    assert "datasets" not in graph["evaluate"] and "datasets" not in graph["checkpoint"]


def test_no_import_cycle_between_offrl_units():
    graph = import_graph()
    assert _cycles(graph) == [], f"import cycles between offrl units: {_cycles(graph)}"
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the checker works


def test_import_offrl_data_alone_resolves_builtin_names(tmp_path):
    """``offrl.data`` pulls in no env code on import, and still finds the built-in names (imported by name)."""
    code = (
        "import sys, offrl.data\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[1:2] in (['envs'], ['datasets'], ['evaluate']))\n"
        "assert loaded == [], loaded\n"
        "ds = offrl.data.load_dataset('gridworld-stitch')\n"
        "assert len(ds) == 300 and 'maze-umaze-sparse' in offrl.data.list_datasets()\n"
        "print('ok')\n"
    )
    env = {"OFFRL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_ope_sits_below_the_algorithms_and_the_cli():
    graph = import_graph()
    above = {"algos", "train", "agent", "cli", "offpolicy", "evaluate", "datasets"}
    assert not graph["ope"] & above, f"offrl.ope imports {sorted(graph['ope'] & above)}"

def test_generative_pieces_sit_below_the_algorithms():
    """``offrl.generative`` (schedules, samplers, flow matching) takes its models as functions: it imports no
    other offrl unit, and the units below the algorithms do not import it."""
    graph = import_graph()
    assert graph["generative"] == set(), f"offrl.generative imports {sorted(graph['generative'])}"
    users = sorted(u for u, deps in graph.items() if "generative" in deps)
    assert set(users) <= {"algos"}, f"only algorithms use offrl.generative, not {users}"
