"""Target profiles: `backends/NAME.toml` → a frozen :class:`Profile` (no TVM needed).

>>> load_profile("llvm").device
'cpu'
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ..kernel.diagnostics import NindslError, Source, Span, did_you_mean
from ..kernel.machine import CPU_FEATURES, missing_cpu_features, usable_cpus


@dataclass(frozen=True)
class Tuning:
    trials_per_task: int = 64
    max_minutes: float = 30.0
    weight_prepack: bool = True


@dataclass(frozen=True)
class Parity:
    rtol: float = 1e-5
    atol: float = 1e-5


@dataclass(frozen=True)
class Scheduling:
    """The `[schedule]` table: how kernels are scheduled without tuning."""

    untuned: str = "template"  # template (nindsl's own, CPU) | default (TVM's pipeline) | dlight (GPU)
    cuda_graph: bool = True  # CUDA builds: the kernels captured in a CUDA graph and replayed (one launch)
    winograd: bool = True  # untuned CPU float32 builds: stride-1 3×3 and 5×5 layers in Winograd form where the rule says
    max_batch: int = 256  # a CUDA any-batch build's bound: one graph per batch size up to it


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    device: str = "cpu"  # cpu | cuda
    target: dict[str, Any] = field(default_factory=dict)  # TVM's JSON-style target
    schedule: Scheduling = Scheduling()
    tuning: Tuning = Tuning()
    parity: Parity = Parity()
    path: str | None = field(default=None, compare=False)

    def graph_bound(self, batch: int | None) -> int | None:
        """The most images one call of a build for ``batch`` takes where it captures one CUDA graph
        per batch size (any-batch CUDA builds with graphs on: ``max_batch``); None elsewhere."""
        graphs = self.device == "cuda" and self.schedule.cuda_graph and batch is None
        return self.schedule.max_batch if graphs else None

    def tvm_target(self):
        import tvm

        return tvm.target.Target(self.target)


DEVICES = ("cpu", "cuda")
UNTUNED = ("template", "default", "dlight")
MAX_BATCH = 65_536  # the largest `max_batch` a profile may set (its graphs' memory is planned for it)


def profile_folder():
    """The installed profiles, or ``backends/`` beside the package when it runs from a
    checkout that was not installed (``PYTHONPATH=.``)."""
    try:
        return resources.files("nindsl.backends")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "backends"


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in profile_folder().iterdir() if p.name.endswith(".toml"))


def _error(message: str, path: str | None, text: str | None, key: str | None = None,
           help: str | None = None) -> NindslError:
    """An error located at the line that sets ``key`` (TOML keeps no positions)."""
    span = None
    if path and text is not None:
        source = Source(path, text)
        number = 1
        if key:
            pattern = re.compile(rf'^\s*(\[{re.escape(key)}\]|"?{re.escape(key)}"?\s*=)')
            number = next((i for i, line in enumerate(text.split("\n"), 1) if pattern.match(line)), 1)
        line = source.line(number)
        indent = len(line) - len(line.lstrip())
        span = Span(source, number, indent + 1, number, max(len(line.rstrip()), indent + 1) + 1)
    return NindslError.one("E0504", message, span, help)


def _typed(cls, table: dict, path, text, section: str):
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise _error(f"unknown key `{key}` in [{section}]", path, text, key,
                         did_you_mean(key, known) or f"known keys: {', '.join(known)}")
    values = {}
    for key, value in table.items():
        expected = type(getattr(cls(), key)) if cls is not Profile else None
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is not None and not isinstance(value, expected):
            raise _error(f"`{key}` in [{section}] must be {expected.__name__}, got {value!r}", path, text, key)
        values[key] = value
    return cls(**values)


def _resolve_host(target: dict[str, Any]) -> dict[str, Any]:
    """Fill in `mcpu = "host"` and `num-cores = "auto"` for this machine."""
    target = dict(target)
    if target.get("kind") == "llvm":
        if target.get("mcpu") == "host":
            from tvm.target import codegen

            target["mcpu"] = codegen.llvm_get_system_cpu()
            hidden = _hidden_features(target)
            if hidden:
                target["mattr"] = [*target.get("mattr", []), *(f"-{f}" for f in hidden)]
        if target.get("num-cores") == "auto":
            target["num-cores"] = usable_cpus()
    if isinstance(target.get("host"), dict):
        target["host"] = _resolve_host(target["host"])
    return target


def _hidden_features(target: dict[str, Any]) -> list[str]:
    """The vector features that LLVM's name for this CPU implies and this machine does not let
    code use: a virtual machine can report an Emerald Rapids (`mcpu`) while its hypervisor
    leaves AMX, AVX512-BF16 and AVX512-FP16 off (they are missing from /proc/cpuinfo), and
    code built for the name alone would die here with SIGILL. A host build turns them off."""
    from tvm.target import Target, codegen

    implied = [f for f in CPU_FEATURES
               if codegen.llvm_cpu_has_features(f, Target({"kind": "llvm", "mcpu": target["mcpu"]}))]
    return missing_cpu_features(implied)


def parse_profile(text: str, path: str) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"line (\d+), column (\d+)", str(error))
        source = Source(path, text)
        span = Span(source, int(match[1]), int(match[2]), int(match[1]), int(match[2]) + 1) if match else None
        raise NindslError.one("E0504", f"`{path}` is not valid TOML: {str(error).split(' (at')[0]}", span) \
            from None
    sections = {"schedule": Scheduling, "tuning": Tuning, "parity": Parity}
    top = {k: v for k, v in data.items() if k not in sections}
    profile = _typed(Profile, top, path, text, "profile")
    if "name" not in data:
        raise _error("a profile needs `name`", path, text)
    if profile.device not in DEVICES:
        raise _error(f"`device` must be one of {', '.join(DEVICES)}, got `{profile.device}`", path, text, "device")
    if not isinstance(profile.target, dict) or "kind" not in profile.target:
        raise _error("a profile needs a [target] table with `kind`", path, text, "target",
                     'for example [target] kind = "llvm"')
    parts = {name: _typed(cls, data.get(name, {}), path, text, name) for name, cls in sections.items()}
    if parts["schedule"].untuned not in UNTUNED:
        raise _error(f"`untuned` must be one of {', '.join(UNTUNED)}", path, text, "untuned")
    if not 1 <= parts["schedule"].max_batch <= MAX_BATCH:
        raise _error(f"`max_batch` must be from 1 to {MAX_BATCH:,}", path, text, "max_batch")
    return Profile(**{**{f.name: getattr(profile, f.name) for f in fields(Profile)}, **parts, "path": path})


def load_profile(spec: str) -> Profile:
    """A profile by name (`llvm`), by path (`my.toml`), or from an inline TVM target table."""
    if spec.lstrip().startswith("{"):
        try:
            target = json.loads(spec)
        except json.JSONDecodeError as error:
            raise NindslError.one("E0504", f"--target is not a valid JSON table: {error}", None) from None
        kind = target.get("kind") if isinstance(target, dict) else None
        if kind is None:
            raise NindslError.one("E0504", "an inline --target table needs a `kind`", None,
                                  'for example --target \'{"kind": "llvm", "num-cores": 2}\'')
        device = "cuda" if kind == "cuda" else "cpu"
        return Profile(name=kind, description="inline target", device=device, target=target,
                       schedule=Scheduling("dlight" if device == "cuda" else "template"))
    if spec.endswith(".toml") or os.sep in spec:
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise NindslError.one("E0301", f"cannot read profile `{spec}`: {error.strerror}", None) from None
        return parse_profile(text, spec)
    names = profile_names()
    if spec not in names:
        as_json = target_string_as_json(spec)
        if as_json:
            raise NindslError.one("E0504", f"--target takes a profile name or a JSON table, not TVM's target "
                                           f"string `{spec}`", None, f"write it as --target '{as_json}'")
        raise NindslError.one("E0504", f"unknown target `{spec}`", None,
                              did_you_mean(spec, names + ["onnx", "torch"])
                              or f"targets: onnx, torch, {', '.join(names)}, a profile .toml, or a TVM target "
                                 'as JSON, e.g. --target \'{"kind": "llvm", "mcpu": "skylake-avx512"}\'')
    resource = profile_folder() / f"{spec}.toml"
    return parse_profile(resource.read_text(encoding="utf-8"), f"backends/{spec}.toml")


_KINDS = ("llvm", "cuda", "c", "rocm", "vulkan", "metal", "opencl")


def target_string_as_json(text: str) -> str | None:
    """TVM's target string (``llvm -mcpu=skylake -num-cores=4``) as the JSON table that
    --target takes, or None when ``text`` is not one.

    >>> target_string_as_json("llvm -mcpu=skylake")
    '{"kind": "llvm", "mcpu": "skylake"}'
    """
    words = text.split()
    if len(words) < 2 or words[0] not in _KINDS:
        return None
    table: dict[str, Any] = {"kind": words[0]}
    for word in words[1:]:
        key, sep, value = word.lstrip("-").partition("=")
        if not word.startswith("-") or not key:
            return None
        table[key] = int(value) if value.isdigit() else value if sep else True
    return json.dumps(table)


def resolved_target(profile: Profile) -> dict[str, Any]:
    """The profile's target with host-dependent values filled in (needs TVM for `host`);
    an `mcpu` that LLVM does not know is refused (LLVM would warn and build for a generic CPU)."""
    target = _resolve_host(profile.target)
    _check_cpu(target, profile)
    return target


def cpu_features(target) -> list[str]:
    """The x86 vector features (:data:`nindsl.kernel.machine.CPU_FEATURES`) that code built for
    ``target`` (a ``tvm.target.Target``; for a GPU, its host) may use: what a CPU needs to run it."""
    from tvm.target import codegen

    cpu = target.host if target.kind.name != "llvm" and target.host is not None else target
    if cpu.kind.name != "llvm" or "x86" not in str(cpu.attrs.get("mtriple") or codegen.llvm_get_system_triple()):
        return []
    return [f for f in CPU_FEATURES if codegen.llvm_cpu_has_features(f, cpu)]


def runs_here(target) -> bool:
    """Whether this CPU has every feature code built for ``target`` may use."""
    return not missing_cpu_features(cpu_features(target))


def host_profile(profile: Profile) -> Profile:
    """``profile`` retargeted to this machine's CPU (`mcpu = "host"`, no `mattr`): where a build
    for another CPU is checked by running the same computation here."""
    target = {k: v for k, v in profile.target.items() if k != "mattr"} | {"mcpu": "host"}
    return replace(profile, target=target)


def check_runs_here(target, what: str, help: str) -> None:
    """Refuse to run code built for ``target`` on this CPU when it lacks a feature the code may
    use (it would die with SIGILL): ``what`` says what was to run, ``help`` what to do instead."""
    missing = missing_cpu_features(cpu_features(target))
    if missing:
        cpu = target.attrs.get("mcpu") or "its CPU"
        raise NindslError.one("E0504", f"{what} is built for `{cpu}`, and this CPU lacks {', '.join(missing)}",
                              None, help)


def check_target(profile: Profile) -> None:
    """Refuse, before anything is built, a target whose `mcpu` LLVM does not know (needs TVM)."""
    resolved_target(profile)


def _where(profile: Profile) -> str:
    return f"`{profile.path}`" if profile.path else "--target"


def _check_cpu(target: dict[str, Any], profile: Profile) -> None:
    for part in (target, target.get("host")):
        if not isinstance(part, dict) or part.get("kind") != "llvm" or "mcpu" not in part:
            continue
        from tvm.target import Target, codegen

        cpu, triple = part["mcpu"], part.get("mtriple") or codegen.llvm_get_system_triple()
        if isinstance(cpu, str) and codegen.llvm_is_valid_cpu(cpu, triple):
            continue
        known = [str(n) for n in codegen.llvm_get_cpu_archlist(Target({"kind": "llvm", "mtriple": triple}))]
        listing = ("python -c \"import tvm, tvm.target.codegen as c; print(*c.llvm_get_cpu_archlist("
                   f"tvm.target.Target({{'kind': 'llvm', 'mtriple': '{triple}'}})))\"")
        near = did_you_mean(str(cpu), known)
        raise NindslError.one("E0504", f"in {_where(profile)}: LLVM knows no CPU `{cpu}` (`mcpu`) for {triple}",
                              None, f"{near + ' ' if near else ''}\"mcpu\": \"host\" is this machine's CPU; "
                                    f"list LLVM's names with: {listing}")
