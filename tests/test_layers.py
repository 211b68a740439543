"""The layering, read from the source with ``ast`` (function-level imports included): the layers are the package's
folders, bottom to top as :data:`LAYERS` lists them, and imports point down only (a module may import its own
folder's modules and those of the folders below; the wings of one layer never import each other); nothing imports
the package root, no ``from .x import _private``, no import cycle, no module over 600 lines, and no long functions.

The entry points (faces' cli, serve, report) take from below only classes, constants, registries, config dataclasses
and their builders, and exception types: every function they call comes from ``run`` (the one ``Run`` API) or
``faces``.
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "aekit"

LAYERS = [  # bottom to top; the ground floor is the modules beside the folders (errors, options, configs, ...)
    ("io",),  # one module per file format, atomic writes, a table's columns
    ("model",),  # parts declared without torch, the networks they build, the AutoEncoder
    ("core",),  # Space, Fitted (the one score), the ONNX export
    ("data",),  # sources, datasets, streamed inputs
    ("training",),  # the loop, gradients, optimizers, precision, graphs, torchrun
    ("analysis",),  # metrics beside PCA, the holes measure, probes, figures, TensorBoard
    ("codec", "generation", "series"),  # the wings: each built from a Fitted, none imports another
    ("run",),  # RunDir and Run, the handle
    ("faces",),  # cli, serve, report, estimators
]
TIER = {folder: i + 1 for i, tier in enumerate(LAYERS) for folder in tier}
ENTRY_POINTS = {"faces.cli", "faces.serve", "faces.report"}
FUNCTIONS_FROM = {"run", "faces"}  # folders whose functions the entry points may call
FUNCTION_MODULES = {"model.parts", "model.config", "generation.parts", "options", "progress"}  # declarations, builders
MAX_TOP_MODULES = 10
MAX_LINES = 600


def modules() -> list[str]:
    """Every module as a dotted name below ``aekit`` (``run.runs``, ``errors``; a folder's own ``io.__init__``)."""
    return sorted(".".join(p.relative_to(SRC).with_suffix("").parts) for p in SRC.rglob("*.py") if p.stem != "__init__"
                  or p.parent != SRC)  # fmt: skip


def source(module: str) -> Path:
    return SRC.joinpath(*module.split(".")).with_suffix(".py")


def folder_of(module: str) -> str | None:
    """The module's folder (its layer), or None for the ground floor beside the folders."""
    return module.split(".")[0] if "." in module else None


def tier(module: str) -> int:
    return TIER[folder_of(module)] if folder_of(module) else 0


def resolve(parts: list[str]) -> tuple[str, bool] | None:
    """``parts`` below ``aekit`` as (module, is_package), or None if it names neither."""
    if SRC.joinpath(*parts).with_suffix(".py").is_file():
        return ".".join(parts), False
    if parts and SRC.joinpath(*parts, "__init__.py").is_file():
        return ".".join([*parts, "__init__"]), True
    return None


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """Every aekit import in ``module`` (function-level ones too): (imported module, name or None, line); the
    package root is ``<root>``, a folder's ``__init__`` is ``folder.__init__``."""
    tree = ast.parse(source(module).read_text())
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [("<root>", None, node.lineno) for alias in node.names if alias.name.split(".")[0] == "aekit"]
        elif isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] == "aekit"):
            if node.level > 0:
                assert node.level - 1 <= len(package), f"{module}:{node.lineno} climbs above the package"
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".")[1:]
            if not target:
                found += [(resolve([alias.name])[0], None, node.lineno) if resolve([alias.name]) else
                          ("<root>", alias.name, node.lineno) for alias in node.names]  # fmt: skip
                continue
            resolved = resolve(target)
            assert resolved, f"{module}:{node.lineno} imports {'.'.join(target)}, which is no aekit module"
            name, is_package = resolved
            for alias in node.names:
                inner = resolve([*target, alias.name]) if is_package else None
                found.append((inner[0], None, node.lineno) if inner else (name, alias.name, node.lineno))
    return found


def test_every_folder_is_a_layer_and_the_top_stays_small():
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(TIER), "add the new folder to LAYERS here and to docs/development.md's tree"
    assert len(folders) >= 6
    top = [m for m in modules() if folder_of(m) is None and m != "__main__"]
    assert len(top) <= MAX_TOP_MODULES, top


@pytest.mark.parametrize("module", modules())
def test_no_module_is_long(module):
    lines = len(source(module).read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines (split it: at most {MAX_LINES})"


@pytest.mark.parametrize("module", modules())
def test_imports_point_down_only(module):
    for target, name, line in imports(module):
        assert target != "<root>", f"{module}.py:{line} imports the package root (import the module it needs)"
        assert not (name or "").startswith("_") or name == "__version__", \
            f"{module}.py:{line} imports the private name {target}.{name}"  # fmt: skip
        if module == "__main__":
            continue
        same_folder = folder_of(target) == folder_of(module) and folder_of(module) is not None
        ok = same_folder or tier(target) < tier(module) or (tier(module) == tier(target) == 0)
        assert ok, (f"{module}.py:{line} imports {target}: layer {tier(target)} ({folder_of(target) or 'ground'}) "
                    f"from layer {tier(module)} ({folder_of(module) or 'ground'})")


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_entry_points_call_functions_of_the_run_api_only(module):
    for target, name, line in imports(module):
        if folder_of(target) in FUNCTIONS_FROM or target in FUNCTION_MODULES:
            continue
        assert name is not None, f"{module}.py:{line} imports the module {target}: take its classes and constants"
        value = getattr(importlib.import_module(f"aekit.{target}".removesuffix(".__init__")), name)
        assert not (inspect.isfunction(value) or inspect.isbuiltin(value)), \
            f"{module}.py:{line} imports the function {target}.{name}; call it through aekit.run.runs.Run"  # fmt: skip


def test_a_climbing_import_is_caught(tmp_path, monkeypatch):
    """The checks above can fail: a codec module importing the run layer, or a wing importing its neighbour."""
    for bad in ("from ..run.runs import Run\n", "from ..generation.priors import Prior\n"):
        monkeypatch.setattr(__import__(__name__), "source", lambda module, text=bad: tmp_path / "m.py")
        (tmp_path / "m.py").write_text(bad)
        with pytest.raises(AssertionError, match="imports"):
            test_imports_point_down_only("codec.fake")


def test_no_import_cycle():
    graph = {m: {t for t, _, _ in imports(m) if t != "<root>"} for m in modules()}
    state: dict[str, str] = {}

    def visit(m, path):
        if state.get(m) == "open":
            raise AssertionError(f"import cycle: {' -> '.join([*path, m])}")
        if state.get(m) != "done":
            state[m] = "open"
            for t in graph.get(m, ()):
                visit(t, [*path, m])
            state[m] = "done"

    for m in graph:
        visit(m, [])


def test_the_loop_knows_no_file_and_the_entry_points_no_loop():
    assert {t for t, _, _ in imports("training.loop")}.isdisjoint({"run.rundir", "io.files", "run.runs"})
    for module in ("faces.cli", "faces.serve"):
        for target, name, line in imports(module):
            if folder_of(target) in {"training", "io", "data", "analysis"} and name is not None:
                value = getattr(importlib.import_module(f"aekit.{target}"), name)
                assert not inspect.isfunction(value), f"{module}.py:{line}: {target}.{name} is a function"


def test_functions_are_short():
    lengths = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths.append((node.end_lineno - node.lineno + 1, f"{path.name}:{node.name}"))
    assert max(lengths)[0] <= 80, max(lengths)
    long = sorted(item for item in lengths if item[0] > 50)
    assert len(long) <= 3, long


def calls(module: str) -> list[tuple[str, int]]:
    """Every name called in ``module`` (``f(...)`` and ``x.f(...)``), with its line."""
    tree = ast.parse(source(module).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name:
                found.append((name, node.lineno))
    return found


SCORE = {"code_distances", "anomaly_score", "ScoreGraph", "avg_pool2d"}  # the score's own arithmetic
SCORE_HOLDERS = {"core.fitted": SCORE, "core.export": {"ScoreGraph"}}  # the export holds the fitted model's ScoreGraph as it is
DOOR_HOLDERS = {"core.space", "run.format"}  # checkpoint rebuilds a stored Scaler from its tensors, nothing more


def scaler_calls(module: str) -> list[tuple[str, int]]:
    """Calls that standardize by hand: a Scaler built (``Scaler(...)``, ``Scaler.fit``, ``from_moments``), or a
    scaler's ``transform`` / ``inverse_transform`` called (scikit-learn's own ``pca.transform`` is not one)."""
    found = []
    for node in ast.walk(ast.parse(source(module).read_text())):
        if not isinstance(node, ast.Call):
            continue
        text = ast.unparse(node.func)
        if text == "Scaler" or text.startswith("Scaler.") or text.endswith("from_moments") or (
                text.endswith(("transform", "inverse_transform")) and "scaler" in text.lower()):  # fmt: skip
            found.append((text, node.lineno))
    return found


def test_one_score_implementation():
    """The anomaly score is computed in one place, fitted.py's ScoreGraph (the ONNX graph is that module): every face
    calls Fitted.score / Run.score and none computes it again."""
    for module in modules():
        for name, line in calls(module):
            assert name not in SCORE or name in SCORE_HOLDERS.get(module, ()), \
                f"{module}.py:{line} calls {name}: score through aekit.core.fitted.Fitted (Run.score), not again"  # fmt: skip


def test_one_door_into_model_space():
    """Rows are scaled into model space and back in one place, space.py's Space; every face goes through a Space
    (Space.to_model / to_data, Run.to_model_space, Data.to_model_space) and none standardizes by hand."""
    for module in modules():
        if module not in DOOR_HOLDERS:
            assert not scaler_calls(module), f"{module}.py standardizes by hand: {scaler_calls(module)}"


def test_the_command_line_answers_help_and_bad_flags_without_loading_torch():
    """``aekit --help``, ``aekit train --help`` and a mistyped flag need only the declarations (aekit.model.parts,
    aekit.configs): no torch, scikit-learn or matplotlib."""
    import subprocess
    import sys

    script = ("import sys\nfrom aekit.faces.cli import main\nfor argv in (['--help'], ['train', '--help'], ['train', "
              "'--bogus'], ['score', '--help']):\n    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
              "heavy = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]\nassert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_command_lines_own_lists_match_the_modules_they_stand_for():
    from aekit.analysis import plots
    from aekit.faces import parser
    from aekit.io import files

    assert set(parser.FIGURES) == set(plots.KINDS) and parser.OUTPUT_SUFFIXES == files.OUTPUT_SUFFIXES


def test_the_run_is_a_handle():
    """``Run`` stays small (its path, configs, fitted model, run directory, rows in, the model's operations and one
    object per wing), and the module that defines it never asks which objective a model has: the objective declares
    its wing (``Objective.wing``, ``fills_missing``)."""
    from dataclasses import fields

    from aekit.model import parts
    from aekit.run.runs import Run

    members = {name for name in dir(Run) if not name.startswith("_")} | {f.name for f in fields(Run)
                                                                          if not f.name.startswith("_")}  # fmt: skip
    assert len(members) <= 25, sorted(members)
    objectives = {name for name, value in vars(parts).items() if isinstance(value, type) and issubclass(value, parts.Part)}
    for node in ast.walk(ast.parse(source("run.runs").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            assert not named & objectives, f"run/runs.py:{node.lineno} asks isinstance of {named & objectives}"
