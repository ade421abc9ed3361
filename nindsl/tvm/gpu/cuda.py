"""GPU machine code in CUDA artifacts, compiled when the artifact is built.

How TVM 0.27 stores CUDA code
-----------------------------
TVM's CUDA code generator (``target.build.cuda``) emits CUDA C++ source and hands it, with
the format tag ``cuda``, to ``ffi.Module.create.cuda``, the factory of TVM's CUDA runtime
(``libtvm_runtime_cuda``, which ``import tvm`` loads only with TVM's compiler, and only where
the NVIDIA driver's ``libcuda`` is present).
There the factory compiles the source at once through the global function
``tvm_callback_cuda_compile`` and tags the result ``ptx`` (when its first byte is ``/``) or
``cubin``. Where the CUDA runtime is not loaded, as on a build machine without a GPU, the
source stays in a fallback module, is exported as it is (``fmt == "cuda"``), and the library
compiles it each time it is loaded (``CUDAModuleNode::JitCompileFromSource``), which needs
``tvm_callback_cuda_compile``: the TVM compiler's Python package, and NVRTC or nvcc, on the
machine that runs it. The format is chosen by the runtime's factory, not by the target.

What nindsl does
----------------
:func:`compile_cuda` replaces ``tvm.compile`` for CUDA profiles:

1. It looks for ``nvcc`` first, and refuses the build (E0504) without it.
2. During ``tvm.compile`` it registers its own ``tvm_callback_cuda_compile``, which runs
   ``nvcc --fatbin -gencode arch=compute_XX,code=sm_XX`` for the target's ``arch`` (with the
   flags TVM's own nvcc path uses). Where the CUDA runtime is loaded, TVM calls it for every
   CUDA module.
3. CUDA modules that still hold source (no CUDA runtime here) are compiled with the same
   function, and the library TVM exports is packed with them as fatbins: in the serialized
   module (``[fmt][function table][code]``, what ``ffi.Module.load_from_bytes.cuda`` reads
   back) the format becomes ``fatbin`` and the code the fatbin. The function table is kept
   byte for byte; every kernel in it must be in the fatbin.

So ``model.so`` holds SASS (machine code) for the profile's architecture, and loading it
compiles nothing.

What the machine that runs a CUDA artifact needs
------------------------------------------------
- An NVIDIA GPU the machine code runs on: SASS for ``sm_XY`` runs on compute capability
  ``X.Z`` with ``Z >= Y`` (``sm_80`` on A100, A10, RTX 30xx/40xx; ``sm_90`` on H100 and H200);
  no PTX is embedded, so no other GPU runs it (:func:`runs_on`).
- An NVIDIA driver that supports the CUDA toolkit whose nvcc built it (recorded in the
  manifest as ``gpu_code.nvcc``): the toolkit's minimum driver, for CUDA 13.0 the 580 series
  (580.65.06 or newer on Linux, per the CUDA 13.0 release notes; the toolkit's files do not
  say it). CUDA 12.x toolkits need a 525.60.13 or newer driver.
- TVM's runtime libraries (``libtvm_runtime``, ``libtvm_runtime_cuda``) and the CUDA runtime
  library they link (TVM 0.27's wheel: ``libcudart.so.13``, which also needs the 580 series);
  not nvcc, not NVRTC, not TVM's compiler (``TVM_USE_RUNTIME_LIB=1`` works:
  :func:`load_cuda_runtime`).

Reading GPU code back
---------------------
:func:`gpu_images` finds the GPU code in a library's bytes without CUDA tools: fatbin
containers (magic ``0xBA55ED50``) and bare cubins (ELF with ``e_machine`` 190), and returns
each image's kind (``sass`` or ``ptx``), architecture and kernel names.
"""

from __future__ import annotations

import functools
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...kernel.diagnostics import NindslError
from ..compat.cuda import compile_with_cuda_compiler, with_cuda_modules

FORMAT = "fatbin"  # what the artifact's CUDA modules hold

# Flags of TVM 0.27's own nvcc path (tvm.support.nvcc), so the kernels compute what TVM's
# load-time compile would have made of them: fast math, half/bfloat16 operators.
NVCC_FLAGS = (
    "-O3",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
    "-Xfatbin=--compress=false",  # images stay readable by gpu_images
)


# --- compiling ----------------------------------------------------------------------------


def find_nvcc() -> str:
    """The ``nvcc`` on PATH, or E0504 saying what to install."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise NindslError.one(
            "E0504", "CUDA builds compile their kernels to GPU machine code with nvcc, and nvcc is not on PATH",
            None, "install the CUDA toolkit (or `pip install nvidia-cuda-nvcc`) and put the folder that "
                  "holds nvcc on PATH, e.g. PATH=/usr/local/cuda/bin:$PATH")
    return nvcc


def nvcc_version(nvcc: str) -> str | None:
    """``13.0.88`` for nvcc's ``... release 13.0, V13.0.88``."""
    try:
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release [\d.]+, V([\d.]+)", text)
    return found.group(1) if found else None


def target_arch(target) -> str:
    """The target's ``arch`` (``sm_80``), which the machine code is compiled for."""
    arch = str(target.attrs.get("arch", "")) if target is not None else ""
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise NindslError.one("E0504", f"a CUDA target needs an `arch` such as \"sm_80\" to compile its kernels "
                                       f"for (this one has {arch or 'none'})", None,
                              "set `arch` in the profile's [target] table")
    return arch


def nvcc_compile(source: str, arch: str, nvcc: str) -> bytes:
    """CUDA source → a fatbin holding SASS for ``arch`` (``sm_80``) and nothing else."""
    number = arch.removeprefix("sm_")
    with tempfile.TemporaryDirectory(prefix="nindsl-nvcc-") as folder:
        source_path, out = Path(folder) / "kernels.cu", Path(folder) / f"kernels.{FORMAT}"
        source_path.write_text(source)
        command = [nvcc, f"--{FORMAT}", "-gencode", f"arch=compute_{number},code=sm_{number}", *NVCC_FLAGS,
                   "-o", str(out), str(source_path)]
        result = subprocess.run(command, capture_output=True, text=True, errors="replace")
        if result.returncode != 0 or not out.is_file():
            lines = (result.stdout + result.stderr).splitlines()
            errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()] or lines
            raise NindslError.one("E0504", f"nvcc ({nvcc}) could not compile the kernels for {arch}: "
                                           + "; ".join(errors[:5]), None,
                                  "does this nvcc support the profile's arch? `nvcc --list-gpu-arch` lists the "
                                  "ones it compiles for")
        return out.read_bytes()


def compile_cuda(module, target, graphs: bool = False, storage_rewrite: bool = True):
    """``tvm.compile(module, target)`` for a CUDA target, with every CUDA module compiled to
    a fatbin for the target's arch (see the module's docstring), and with ``graphs`` its
    kernels captured in CUDA graphs (:func:`nindsl.tvm.compat.cuda.compile_with_cuda_compiler`).
    Refuses (E0504) before compiling anything when nvcc is missing."""
    nvcc = find_nvcc()
    compile_source = functools.partial(nvcc_compile, arch=target_arch(target), nvcc=nvcc)

    def machine_code(fmt: str, names: list[str], code: bytes) -> tuple[str, bytes]:
        if fmt == "cuda":
            code = compile_source(code.decode())
        images = gpu_images(code)
        missing = set(names) - {k for i in images if i.kind == "sass" for k in i.kernels}
        if missing:
            raise NindslError.one("E0504", f"nvcc's output lacks machine code for {len(missing)} kernel(s): "
                                           f"{', '.join(sorted(missing)[:5])}", None)
        return (FORMAT if code[:4] == FATBIN_MAGIC else "cubin" if code[:4] == b"\x7fELF" else fmt), code

    executable = compile_with_cuda_compiler(module, target, compile_source, graphs, storage_rewrite)
    return with_cuda_modules(executable, machine_code, nvcc=nvcc_version(nvcc))


# --- reading GPU code ---------------------------------------------------------------------

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
EM_CUDA = 190
_FATBIN_KINDS = {1: "ptx", 2: "sass"}
_COMPRESSED = 0x2000 | 0x8000  # fatbin entry flags that mark a compressed image


@dataclass(frozen=True)
class GpuImage:
    """One image of GPU code: ``sass`` (a cubin: machine code) or ``ptx`` (to be compiled by
    the driver), for an architecture, with its kernels (empty when compressed)."""

    kind: str
    arch: str  # sm_80
    kernels: tuple[str, ...]
    compressed: bool = False


def _cubin(data: bytes, start: int) -> tuple[GpuImage, int] | None:
    """The cubin (CUDA ELF) at ``start`` and where it ends, or None if there is none."""
    try:
        if data[start:start + 4] != b"\x7fELF" or data[start + 4] != 2 or data[start + 5] != 1:
            return None  # not a little-endian ELF64
        machine, = struct.unpack_from("<H", data, start + 18)
        if machine != EM_CUDA:
            return None
        shoff, flags = struct.unpack_from("<QI", data, start + 40)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, start + 58)
        if shentsize != 64 or not 0 < shnum < 1 << 16 or shstrndx >= shnum:
            return None
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, start + shoff + i * 64) for i in range(shnum)]
        names_at = start + sections[shstrndx][4]
        end = start + shoff + shnum * 64
        kernels = []
        for section in sections:
            name_end = data.index(b"\0", names_at + section[0])
            name = data[names_at + section[0]:name_end].decode("ascii", "replace")
            if name.startswith(".text."):
                kernels.append(name[len(".text."):])
            if section[1] != 8:  # SHT_NOBITS occupies no bytes
                end = max(end, start + section[4] + section[5])
        # e_flags: the SM is bits 8-15 from ELF ABI version 8 (CUDA 13), bits 0-7 before
        sm = (flags >> 8) & 0xFF if data[start + 8] >= 8 else flags & 0xFF
        return GpuImage("sass", f"sm_{sm}", tuple(sorted(kernels))), end
    except (struct.error, ValueError, IndexError):
        return None


def _fatbin(data: bytes, start: int) -> tuple[list[GpuImage], int] | None:
    """The images of the fatbin at ``start`` and where it ends, or None if there is none."""
    try:
        magic, version, header_size, fat_size = struct.unpack_from("<IHHQ", data, start)
        end = start + header_size + fat_size
        if version != 1 or header_size != 16 or end > len(data):
            return None
        images, offset = [], start + header_size
        while offset < end:
            kind, _, entry_header, size = struct.unpack_from("<HHIQ", data, offset)
            compressed_size, = struct.unpack_from("<I", data, offset + 16)
            arch, = struct.unpack_from("<I", data, offset + 28)
            flags, = struct.unpack_from("<Q", data, offset + 40)
            if kind not in _FATBIN_KINDS or entry_header < 64 or size == 0:
                return None
            payload = data[offset + entry_header:offset + entry_header + size]
            compressed = bool(flags & _COMPRESSED or compressed_size)
            kernels: tuple[str, ...] = ()
            if not compressed and kind == 2:
                cubin = _cubin(payload, 0)
                kernels = cubin[0].kernels if cubin else ()
            elif not compressed:
                kernels = tuple(sorted({m.decode() for m in re.findall(rb"\.entry\s+([A-Za-z_$][\w$]*)", payload)}))
            images.append(GpuImage(_FATBIN_KINDS[kind], f"sm_{arch}", kernels, compressed))
            offset += entry_header + size
        return images, end
    except struct.error:
        return None


def gpu_images(data: bytes) -> tuple[GpuImage, ...]:
    """Every fatbin image and bare cubin in ``data`` (a library's bytes, or nvcc's output)."""
    images: list[GpuImage] = []
    covered: list[tuple[int, int]] = []
    for found in re.finditer(re.escape(FATBIN_MAGIC), data):
        parsed = _fatbin(data, found.start())
        if parsed:
            images.extend(parsed[0])
            covered.append((found.start(), parsed[1]))
    for found in re.finditer(re.escape(b"\x7fELF"), data):
        if any(a <= found.start() < b for a, b in covered):
            continue
        parsed = _cubin(data, found.start())
        if parsed:
            images.append(parsed[0])
            covered.append((found.start(), parsed[1]))
    return tuple(images)


def runs_on(arch: str, compute_version: str) -> bool:
    """Whether SASS for ``arch`` (``sm_80``, ``sm_90a``) runs on a GPU of ``compute_version``
    (``8.6``): the same major version and at least the minor one; ``a`` variants only on
    their own GPU."""
    found = re.fullmatch(r"sm_(\d+)(\d)([a-z]?)", arch)
    gpu = re.fullmatch(r"(\d+)\.(\d+)", compute_version)
    if not found or not gpu:
        return False
    major, minor, variant = int(found.group(1)), int(found.group(2)), found.group(3)
    if variant:
        return (major, minor) == (int(gpu.group(1)), int(gpu.group(2)))
    return major == int(gpu.group(1)) and int(gpu.group(2)) >= minor
