"""The dependency rules hold, and the checkers that enforce them catch a planted break.

The rules live in pyproject.toml: import-linter's contracts (layers, forbidden imports,
no cycles, function-level imports included) and ruff's private-name rule, which covers
other packages' private names (TVM's are allowed in nindsl/tvm/compat/ only). Ruff's
rule (like pylint's) skips first-party imports, so nindsl's own private names are
checked here, over the syntax tree."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return str(path)


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("lint-imports"), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"})


def _planted(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package with ``line`` added at the end of ``module`` (inside a function)."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "nindsl", copy / "nindsl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / "nindsl" / module
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {line}\n")
    return copy


def test_the_import_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("language/ir.py", "from ..tvm import build", "Stages import one way"),  # upward, inside a function
    ("onnx/lower.py", "from ..torch import twin", "Stages import one way"),  # onnx and torch are independent
    ("language/shapes.py", "import numpy", "import no numpy"),
    ("weights.py", "import argparse", "Only the command line knows argparse"),
    ("language/ir.py", "from . import shapes", "No import cycles"),  # shapes imports ir
    ("lsp/features.py", "import numpy", "The language server starts fast"),
    ("lsp/analysis.py", "from ..onnx import lower", "The language server starts fast"),
    ("tvm/narrow/chain.py", "from ..gpu import rules", "CPU narrow kernels and GPU code never import each other"),
    ("tvm/gpu/half.py", "from ..narrow import chain", "CPU narrow kernels and GPU code never import each other"),
    ("tvm/tune/search.py", "from ..deploy import artifact", "The rooms of nindsl.tvm import down"),
    ("tvm/frontend.py", "from . import build", "The rooms of nindsl.tvm import down"),
])
def test_a_planted_violation_breaks_a_contract(tmp_path, module, line, contract):
    result = _lint(_planted(tmp_path, module, line))
    assert result.returncode != 0
    broken = [text for text in result.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(contract in text for text in broken), result.stdout


def _private_imports(package: Path) -> list[str]:
    """`module: from X import _name` for each import of another module's private name."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("nindsl")):
                found += [f"{path.relative_to(package.parent)}: from {'.' * node.level}{node.module or ''} "
                          f"import {alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_private_names_stay_private(tmp_path):
    assert _private_imports(ROOT / "nindsl") == []
    tree = _planted(tmp_path, "bench/__init__.py", "from ..tvm.tune.search import _progress_callback")
    assert _private_imports(tree / "nindsl") == [
        "nindsl/bench/__init__.py: from ..tvm.tune.search import _progress_callback"]


def test_other_packages_private_names_are_used_in_compat_only(tmp_path):
    ruff = _tool("ruff")
    clean = subprocess.run([ruff, "check", "--no-cache", "nindsl"], cwd=ROOT, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
    tree = _planted(tmp_path, "tvm/tune/search.py",
                    "from tvm.s_tir.meta_schedule.builder.local_builder import _worker_func")
    planted = subprocess.run([ruff, "check", "--no-cache", "nindsl"], cwd=tree, capture_output=True, text=True)
    assert planted.returncode != 0 and "import-private-name" in planted.stdout


# TVM's internals: modules that are not its public API, global functions it looks up by name,
# its serialized formats, and attributes its passes read. nindsl uses them in tvm/compat/ only,
# behind the version check, so that moving to a new TVM means reading one folder.
INTERNAL_MODULES = ("tvm.relax.backend", "tvm.s_tir.dlight.analysis", "tvm.s_tir.meta_schedule.builder.local_builder",
                    "tvm.support.popen_pool", "tvm_ffi.libinfo", "tvm.runtime._")
INTERNAL_STRINGS = ("tvm_callback_cuda_compile", "runtime.ModulePackImportsToTensor", "runtime.ModuleImportsBlobName",
                    "__tvm_ffi__library_bin", "dlight.do_not_tensorize", "device_api.")
INTERNAL_CALLS = ("register_global_func", "remove_global_func", "get_global_func", "load_lib_ctypes")


def _tvm_internals(package: Path) -> list[str]:
    """`path:line: what` for each use of TVM's internals outside tvm/compat/."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        if relative.parts[:3] == ("nindsl", "tvm", "compat"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            line = f"{relative}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                found += [f"{line}: imports {n}" for n in names if n.startswith(INTERNAL_MODULES)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
                found += [f"{line}: names {s}" for s in INTERNAL_STRINGS if s in node.value]
            elif isinstance(node, ast.Attribute) and node.attr in INTERNAL_CALLS:
                found.append(f"{line}: calls {node.attr}")
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "stack"
                                                      for t in node.targets):
                found.append(f"{line}: replaces inspect.stack")
    return found


def test_tvm_internals_are_used_in_compat_only(tmp_path):
    assert _tvm_internals(ROOT / "nindsl") == []
    for line, expected in [("from tvm.relax.backend.cpu_generic.pipeline import finalize_passes", "imports"),
                           ("tvm.get_global_func('runtime.ModulePackImportsToTensor')", "names"),
                           ("tvm.register_global_func('x', print, override=True)", "calls register_global_func"),
                           ("func.with_attr('dlight.do_not_tensorize', True)", "names dlight.do_not_tensorize")]:
        tree = _planted(tmp_path / expected.split()[0] / str(len(line)), "tvm/gpu/half.py", line)
        found = _tvm_internals(tree / "nindsl")
        assert len(found) >= 1 and all("nindsl/tvm/gpu/half.py" in f for f in found), found
        assert any(expected in f for f in found), found
