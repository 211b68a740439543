"""The layering, read from the source with ``ast`` (function-level imports included): imports point down only,
nothing imports the package root, no ``from .x import _private``, no import cycle, and no long functions.

The table is the README's Development section (and the architecture note it came from). A module may import
the modules named in its row; the entry points (layer 9) take from below only classes, constants, registries,
config dataclasses and their builders, and exception types: every function they call comes from ``runs`` (the
one ``Run`` API) or ``report``.
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "aekit"

BASE = {"errors", "_version", "distributed", "graphs", "options", "progress"}  # layer 0: nothing of aekit
LAYERS = {  # module -> (layer, the aekit modules it may import)
    **{name: (0, set()) for name in BASE},
    "configs": (1, {"errors", "options"}),
    "optim": (2, {"configs"}),  # the optimizer registry (its help: configs.OPTIMIZER_HELP)  # data, training and diffusion configs: declared without torch
    "parts": (1, {"errors", "options", "tables", "configs"}),  # bodies, objectives, ModelConfig: without torch
    "networks": (1, {"errors", "configs"}),  # what the parts build and compute: layers, bottlenecks, losses (torch)
    "files": (1, {"errors"}),
    "tables": (1, {"errors", "files"}),  # named columns: numeric, categorical, missing cells
    "csvfile": (1, {"errors", "files", "tables"}),  # the one CSV reader: delimiter, header, kinds of columns
    "models": (2, {"errors", "networks", "parts", "tables"}),  # the AutoEncoder module
    "precision": (1, {"errors", "configs"}),
    "quality": (1, {"errors"}),  # the feature network and sample-quality metrics
    "priors": (2, {"errors", "configs"}),  # latent priors: plain distributions over codes
    "space": (2, {"errors", "files", "tables"}),  # the one door between a user's rows and a model
    "mlpgrad": (3, {"errors", "models", "precision"}),
    "stream": (3, {"errors", "files", "space"}),
    "data": (4, {"errors", "options", "configs", "files", "csvfile", "tables", "space", "stream"}),
    "train": (5, {"errors", "options", "configs", "distributed", "graphs", "optim", "models", "precision", "mlpgrad",
                  "space", "stream", "progress"}),
    "codec": (5, {"errors"}),  # integer tables, the entropy coder, the container
    "fitted": (5, {"errors", "models", "space"}),  # one fitted model: encode, decode, impute, the one score
    "evaluate": (6, "below"),
    "plots": (7, "below"),
    "estimator": (9, "below"),  # the scikit-learn API: it logs to TensorBoard (7) and loads runs (8, from_run)
    "imputer": (9, {"estimator", "evaluate"}),  # the scikit-learn imputer, on the estimators' shared base
    "export": (7, "below"),
    "checkpoint": (7, "below"),
    "tensorboard_log": (7, "below"),
    "runs": (8, "below"),
    "report": (9, {"runs", "evaluate", "plots"}),
    "serve": (9, {"runs", "errors", "models"}),
    "cli": (9, {"runs", "report", "_version", "configs", "parts", "data", "errors", "files", "models", "options",
                "plots", "priors", "stream", "train", "serve"}),  # serve: imported only to start the server  # fmt: skip
    "__main__": (10, {"cli"}),  # python -m aekit
}
ENTRY_POINTS = {"report", "serve", "cli"}
FUNCTIONS_FROM = {"runs", "report", "models", "parts", "options"}  # where the entry points may take functions from


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """Every aekit import in ``module`` (function-level ones too): (imported module, name or None, line)."""
    tree = ast.parse((SRC / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [("<root>", None, node.lineno) for alias in node.names if alias.name.split(".")[0] == "aekit"]
        elif isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("aekit")):
            target = (node.module or "").removeprefix("aekit").lstrip(".")
            if not target:  # `from . import x`: modules (or, for the package root, its names)
                found += [(alias.name, None, node.lineno) if (SRC / f"{alias.name}.py").is_file() else
                          ("<root>", alias.name, node.lineno) for alias in node.names]  # fmt: skip
            else:
                found += [(target.split(".")[0], alias.name, node.lineno) for alias in node.names]
    return found


def modules() -> list[str]:
    return sorted(p.stem for p in SRC.glob("*.py") if p.stem != "__init__")


def test_every_module_has_a_row():
    assert set(modules()) == set(LAYERS), "add the new module to LAYERS here and to the README's table"


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_point_down_only(module):
    layer, allowed = LAYERS[module]
    for target, name, line in imports(module):
        assert target != "<root>", f"{module}.py:{line} imports the package root (import the module it needs)"
        assert not (name or "").startswith("_") or name == "__version__", \
            f"{module}.py:{line} imports the private name {target}.{name}"  # fmt: skip
        # explicit rows may name a module of their own layer ("unless the table says so": cli -> report, serve)
        ok = LAYERS[target][0] < layer if allowed == "below" else target in allowed and LAYERS[target][0] <= layer
        assert ok, f"{module}.py:{line} imports {target} (layer {LAYERS[target][0]}), not allowed for {module}"


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_entry_points_call_functions_of_the_run_api_only(module):
    for target, name, line in imports(module):
        if target in FUNCTIONS_FROM or target == "serve":
            continue
        assert name is not None, f"{module}.py:{line} imports the module {target}: take its classes and constants"
        value = getattr(importlib.import_module(f"aekit.{target}"), name)
        assert not (inspect.isfunction(value) or inspect.isbuiltin(value)), \
            f"{module}.py:{line} imports the function {target}.{name}; call it through aekit.runs.Run"  # fmt: skip


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
    assert {t for t, _, _ in imports("train")}.isdisjoint({"checkpoint", "files", "runs"})
    for module in ("cli", "serve"):
        for target, name, line in imports(module):
            if target in {"train", "files", "stream", "data", "checkpoint", "evaluate"} and name is not None:
                value = getattr(importlib.import_module(f"aekit.{target}"), name)
                assert not inspect.isfunction(value), f"{module}.py:{line}: {target}.{name} is a function"


def test_functions_are_short():
    lengths = []
    for path in SRC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths.append((node.end_lineno - node.lineno + 1, f"{path.name}:{node.name}"))
    assert max(lengths)[0] <= 80, max(lengths)
    long = sorted(item for item in lengths if item[0] > 50)
    assert len(long) <= 3, long


def calls(module: str) -> list[tuple[str, int]]:
    """Every name called in ``module`` (``f(...)`` and ``x.f(...)``), with its line."""
    tree = ast.parse((SRC / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name:
                found.append((name, node.lineno))
    return found


SCORE = {"code_distances", "anomaly_score", "ScoreGraph", "avg_pool2d"}  # the score's own arithmetic
SCORE_HOLDERS = {"fitted": SCORE, "export": {"ScoreGraph"}}  # the export holds the fitted model's ScoreGraph as it is
DOOR_HOLDERS = {"space", "checkpoint"}  # checkpoint rebuilds a stored Scaler from its tensors, nothing more


def scaler_calls(module: str) -> list[tuple[str, int]]:
    """Calls that standardize by hand: a Scaler built (``Scaler(...)``, ``Scaler.fit``, ``from_moments``), or a
    scaler's ``transform`` / ``inverse_transform`` called (scikit-learn's own ``pca.transform`` is not one)."""
    found = []
    for node in ast.walk(ast.parse((SRC / f"{module}.py").read_text())):
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
                f"{module}.py:{line} calls {name}: score through aekit.fitted.Fitted (Run.score), not again"  # fmt: skip


def test_one_door_into_model_space():
    """Rows are scaled into model space and back in one place, space.py's Space; every face goes through a Space
    (Space.to_model / to_data, Run.to_model_space, Data.to_model_space) and none standardizes by hand."""
    for module in modules():
        if module not in DOOR_HOLDERS:
            assert not scaler_calls(module), f"{module}.py standardizes by hand: {scaler_calls(module)}"


def test_the_command_line_answers_help_and_bad_flags_without_loading_torch():
    """``aekit --help``, ``aekit train --help`` and a mistyped flag need only the declarations (aekit.parts,
    aekit.configs): no torch, scikit-learn or matplotlib."""
    import subprocess
    import sys

    script = ("import sys\nfrom aekit.cli import main\nfor argv in (['--help'], ['train', '--help'], ['train', "
              "'--bogus'], ['score', '--help']):\n    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
              "heavy = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]\nassert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_command_lines_own_lists_match_the_modules_they_stand_for():
    from aekit import cli, files, plots

    assert set(cli.FIGURES) == set(plots.KINDS) and cli.OUTPUT_SUFFIXES == files.OUTPUT_SUFFIXES
