"""A deployable folder: artifacts plus exactly what loading and running them needs.

``nindsl bundle ARTIFACT... -o DIR`` writes::

    DIR/nindsl              the command, runtime-only (TVM_USE_RUNTIME_LIB=1): `DIR/nindsl run DIR/artifacts/x -i y.npy`
    DIR/site/               nindsl, TVM's runtime (its Python modules and libtvm_runtime*.so,
                            not the 259 MB compiler), tvm_ffi, typing_extensions and safetensors
    DIR/artifacts/NAME/     each artifact, without its model.onnx (provenance, not needed to run)
    DIR/artifacts/NAME/model.graph.onnx   that model's graph with its weights as inputs (a few KB),
                            for comparing with ONNX Runtime on the target machine

The target machine needs Python with numpy, and for CUDA artifacts an NVIDIA driver.
tvm_ffi holds a compiled extension for one Python version: ``python_wheels`` may give
wheels (e.g. ``pip download apache-tvm-ffi==0.1.14.post1 --python-version 3.12
--only-binary=:all: --no-deps``) to unpack instead of copying this interpreter's.
"""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from ...kernel.diagnostics import NindslError
from ...kernel.io import atomic_directory
from ...kernel.outputs import listed_folder
from .artifact import LIBRARY, MANIFEST, ONNX_FILE, WEIGHTS, check_files, read_manifest

# TVM's Python modules that loading and running an artifact imports (measured with
# TVM_USE_RUNTIME_LIB=1), by folder; the rest of TVM's Python (Relax, TIR scheduling,
# TOPI, ~35 MB) is the compiler's.
TVM_PACKAGES = ("runtime", "ir", "target", "tirx", "te", "sym", "rpc", "support", "driver", "script", "contrib",
                "backend")
TVM_LIBRARIES = ("libtvm_runtime.so", "libtvm_runtime_cuda.so", "libtvm_runtime_extra.so")
GRAPH_FILE = "model.graph.onnx"


#: What `bundle -o` replaces: a folder holding bundle.json and the files it lists, nothing else.
BUNDLE = listed_folder("a nindsl bundle", "bundle.json", lambda relative: "__pycache__" in relative.parts)

# The launcher checks what the target machine must bring itself (a Python, and numpy in it)
# before nindsl starts, and says what is missing instead of ending in a traceback.
LAUNCHER = r"""#!/bin/sh
# nindsl, runtime-only: TVM loads libtvm_runtime.so, never its compiler.
# It needs a Python 3 with numpy: python3 on the PATH, or the one named by $PYTHON.
here=$(cd "$(dirname "$0")" && pwd)
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "nindsl: this bundle runs on Python 3 with numpy, and there is no \`$python\` here;" \
         "install Python 3, or set PYTHON to one (PYTHON=/usr/bin/python3.11 $0 ...)" >&2
    exit 127
fi
TVM_USE_RUNTIME_LIB=1 PYTHONPATH="$here/site${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -c '
import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]  # the working folder: the bundle is what runs, wherever it is started
try:
    import numpy
except ImportError:
    python = sys.executable
    sys.exit("nindsl: this bundle needs numpy, and %s (Python %s) has none; install it (`%s -m pip install numpy`),"
             " or set PYTHON to a Python that has it" % (python, sys.version.split()[0], python))
import runpy
runpy.run_module("nindsl", run_name="__main__", alter_sys=True)
' "$@"
"""


@dataclass(frozen=True)
class BundleReport:
    out: Path
    bytes: int  # the files' sizes added up
    artifacts: tuple[str, ...]
    disk_bytes: int = 0  # the blocks the folder takes on its file system, folders included: what `du` says
    files: int = 0


# What tvm_ffi ships for building C++ extensions, not for running them.
BUILD_ONLY = {"include", "src", "3rdparty", "cython", "stub"}


def _ignore(folder, names):
    return [n for n in names if n == "__pycache__" or n.endswith(".pyc") or n in BUILD_ONLY]


def _package(name: str) -> Path:
    """Where an installed package (its folder) or single-file module (its file) is."""
    path = Path(__import__(name).__file__)
    return path.parent if path.name == "__init__.py" else path


def copy_runtime(site: Path, wheels: list[Path] = ()) -> None:
    """TVM's runtime (without its compiler) and the Python packages it needs, into ``site``."""
    _copy_tvm(site)
    _copy_python(site, list(wheels))


def _copy_tvm(site: Path) -> None:
    source = _package("tvm")
    target = site / "tvm"
    target.mkdir(parents=True)
    for path in source.glob("*.py"):
        shutil.copy2(path, target / path.name)
    for package in TVM_PACKAGES:
        if (source / package).is_dir():
            shutil.copytree(source / package, target / package, ignore=_ignore)
    (target / "lib").mkdir()
    for library in TVM_LIBRARIES:
        if (source / "lib" / library).is_file():
            shutil.copy2(source / "lib" / library, target / "lib" / library)


def _copy_python(site: Path, wheels: list[Path]) -> None:
    """tvm_ffi (and typing_extensions, which it imports) and safetensors: from the given wheels
    where one is given, else as installed here."""
    given = set()
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if not m.split("/")[0].endswith((".dist-info", ".data"))
                           and not BUILD_ONLY & set(m.split("/")) and "__pycache__" not in m]
                archive.extractall(site, members)
                given |= {m.split("/")[0] for m in members}
        except (OSError, zipfile.BadZipFile) as error:
            raise NindslError.one("E0502", f"`{wheel}` is not a readable wheel ({error})", None) from None
    for name in ("tvm_ffi", "typing_extensions", "safetensors"):
        if name in given or f"{name}.py" in given:
            continue
        source = _package(name)
        if source.is_dir():
            shutil.copytree(source, site / name, ignore=_ignore)
        else:
            shutil.copy2(source, site / source.name)


def _graph_only(model_path: Path, out: Path) -> None:
    """The ONNX model with its initializers turned into graph inputs, at a few KB: what ONNX
    Runtime needs to run it with weights fed as inputs (a float32 artifact's weights.safetensors;
    narrow artifacts store theirs as their kernels take them)."""
    import onnx

    model = onnx.load(str(model_path))
    graph = model.graph
    for tensor in graph.initializer:
        graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    del graph.initializer[:]
    out.write_bytes(model.SerializeToString(deterministic=True))


def bundle(artifacts: list[str | Path], out: str | Path, python_wheels: list[str | Path] = ()) -> BundleReport:
    """Write a self-contained runtime-only folder for ``artifacts`` (see the module docstring)."""
    import nindsl

    folders = [Path(a) for a in artifacts]
    names = [f.resolve().name for f in folders]
    if len(set(names)) != len(names):
        raise NindslError.one("E0504", f"two artifacts are named alike ({', '.join(names)})", None,
                              "give artifact folders with different names")
    for folder in folders:  # a nindsl artifact whose files are the ones it was built with, or a refusal
        check_files(folder, read_manifest(folder))
    with atomic_directory(Path(out), BUNDLE) as staging:
        site = staging / "site"
        shutil.copytree(Path(nindsl.__file__).parent, site / "nindsl", ignore=_ignore)
        copy_runtime(site, [Path(w) for w in python_wheels])
        for folder, name in zip(folders, names):
            target = staging / "artifacts" / name
            target.mkdir(parents=True)
            for file in (LIBRARY, WEIGHTS, MANIFEST):
                shutil.copy2(folder / file, target / file)
            if (folder / ONNX_FILE).is_file():
                _graph_only(folder / ONNX_FILE, target / GRAPH_FILE)
        launcher = staging / "nindsl"
        launcher.write_text(LAUNCHER)
        launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if not p.is_dir())
        (staging / "bundle.json").write_text(json.dumps({"artifacts": names, "runtime_only": True, "files": files},
                                                        indent=1) + "\n")
    return _measured(BundleReport(Path(out), 0, tuple(names)))


def _measured(report: BundleReport) -> BundleReport:
    """``report`` with the folder's size: its files' bytes, and the blocks it takes on disk (st_blocks
    counts 512-byte units), as ``du`` counts them: every entry once, folders included."""
    entries = [report.out.lstat()] + [p.lstat() for p in report.out.rglob("*")]
    files = [e for e in entries if stat.S_ISREG(e.st_mode)]
    return replace(report, bytes=sum(e.st_size for e in files), disk_bytes=sum(e.st_blocks * 512 for e in entries),
                   files=len(files))
