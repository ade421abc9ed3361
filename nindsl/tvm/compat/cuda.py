"""TVM 0.27's CUDA internals: the global function its CUDA runtime compiles source with, the
executable class and its export hook, the layout of a library's serialized modules
(``__tvm_ffi__library_bin``), and which shared library holds the CUDA runtime.
:mod:`nindsl.tvm.gpu.cuda` uses them to put machine code into CUDA libraries."""

from __future__ import annotations

import contextlib
import functools
import os
import struct
from pathlib import Path

from ...kernel.diagnostics import NindslError
from . import check_version

HOOK = "tvm_callback_cuda_compile"  # TVM's global function that compiles CUDA source


@contextlib.contextmanager
def cuda_compiler(compile_source):
    """While inside, TVM's CUDA runtime compiles source with ``compile_source(source) -> bytes``
    (where the runtime is loaded, it calls it for every CUDA module); TVM's own is put back after."""
    import tvm

    check_version()

    def hook(code, *_):  # TVM's CUDA runtime calls it with the source alone
        return bytearray(compile_source(str(code)))

    previous = tvm.get_global_func(HOOK, allow_missing=True)
    tvm.register_global_func(HOOK, hook, override=True)
    try:
        yield
    finally:
        if previous is not None:
            tvm.register_global_func(HOOK, previous, override=True)
        else:
            import tvm_ffi

            tvm_ffi.remove_global_func(HOOK)


def compile_with_cuda_compiler(module, target, compile_source, graphs: bool = False, storage_rewrite: bool = True):
    """``tvm.compile`` with CUDA source compiled by ``compile_source`` where TVM compiles it;
    ``graphs``: the kernels between the input and the output captured in a CUDA graph on the
    first call and replayed after (Relax's ``StaticPlanBlockMemory`` and ``RewriteCUDAGraph``,
    which ``relax.backend.use_cuda_graph`` turns on), one graph per batch size where
    :func:`capture_each_batch` marked the module. ``storage_rewrite=False`` leaves TIR's buffers
    unmerged (``tirx.disable_storage_rewrite``): most of MetaSchedule's sampled tensor-core
    kernels fail TVM's storage rewrite, and build without it."""
    import tvm

    config = {"relax.backend.use_cuda_graph": graphs, "tirx.disable_storage_rewrite": not storage_rewrite}
    with cuda_compiler(compile_source), tvm.transform.PassContext(config=config):
        return tvm.compile(module, target=target)


def capture_each_batch(module, max_batch: int):
    """``module`` whose ``main`` (over a symbolic batch size) is captured in one CUDA graph per
    batch size, for batches up to ``max_batch``: its memory is planned for that bound
    (``tir_var_upper_bound``), and the graphs are keyed by the batch size
    (``relax.rewrite_cuda_graph.capture_symbolic_vars``). A batch above the bound must be split."""
    from tvm import relax

    check_version()
    main = module["main"]
    names = sorted(str(v) for v in relax.analysis.defined_symbolic_vars(main))
    if names:
        module["main"] = main.with_attr("tir_var_upper_bound", {name: max_batch for name in names}) \
            .with_attr("relax.rewrite_cuda_graph.capture_symbolic_vars", names)
    return module


def captures_cuda_graph(executable) -> bool:
    """Whether a compiled Relax executable runs its kernels through a captured CUDA graph."""
    check_version()
    return "vm.builtin.cuda_graph.run_or_capture" in executable.as_text()


def with_cuda_modules(executable, replace, nvcc: str | None = None):
    """``executable`` whose exported library embeds its serialized modules with each CUDA module's
    code replaced: ``replace(fmt, kernel names, code) -> (fmt, code)``. The function tables are
    kept byte for byte. The result exports like TVM's executable and says ``nvcc``."""
    import tvm

    check_version()  # the layout of TVM's serialized modules, read below, is TVM 0.27's
    pack = tvm.get_global_func("runtime.ModulePackImportsToTensor")
    blob = replace_cuda_modules(bytes(pack(executable.mod).numpy().tobytes()), replace)
    machine_code = _machine_code_class(type(executable))(executable.mod)
    machine_code.library_blob = blob
    machine_code.blob_symbol = str(tvm.get_global_func("runtime.ModuleImportsBlobName")())
    machine_code.nvcc = nvcc
    return machine_code


@functools.cache
def _machine_code_class(base: type) -> type:
    """``base`` (TVM's executable class) whose exported library embeds ``library_blob`` as its
    serialized modules, in place of the one TVM would pack."""

    class MachineCode(base):
        library_blob: bytes = b""
        blob_symbol: str = ""
        nvcc: str | None = None

        def export_library(self, file_name, **kwargs):
            kwargs.setdefault("fpack_imports", self.pack_imports)
            return super().export_library(file_name, **kwargs)

        def pack_imports(self, module, is_system_lib: bool, symbol_prefix: str, workspace_dir: str) -> str:
            if is_system_lib or symbol_prefix:
                raise NindslError.one("E0504", "nindsl's CUDA libraries are shared libraries, not system libraries",
                                      None)
            path = os.path.join(workspace_dir, "devc.c")
            Path(path).write_text(blob_source(self.library_blob, self.blob_symbol))
            return path

    MachineCode.__name__ = MachineCode.__qualname__ = f"MachineCode{base.__name__}"
    return MachineCode


def blob_source(blob: bytes, symbol: str) -> str:
    """C source that defines ``symbol`` as ``blob`` (as TVM's ModulePackImportsToC writes it)."""
    rows = (",".join(str(b) for b in blob[i:i + 32]) for i in range(0, len(blob), 32))
    body = ",\n".join(rows)
    return (f'#ifdef __cplusplus\nextern "C" {{\n#endif\n'
            f"extern const unsigned char {symbol}[];\n"
            f"const unsigned char {symbol}[{len(blob)}] = {{\n{body}\n}};\n"
            f"#ifdef __cplusplus\n}}\n#endif\n")


# --- the serialized modules of a library (TVM 0.27 / tvm-ffi 0.1) ------------------------
# <nbytes: u64> <indptr: vec<u64>> <children: vec<u64>>, then per module <kind: str> and,
# unless kind is "_lib", <bytes: str>; vec and str are a u64 count and the items.
# A CUDA module's bytes: <fmt: str> <function table> <code: str>; the table is a u64 count of
# <name: str> <name: str> <arg types: vec<4 bytes>> <launch tags: vec<str>> <extra tags: vec<4 bytes>>.


class _Reader:
    def __init__(self, data: bytes, offset: int = 0):
        self.data, self.offset = data, offset

    def u64(self) -> int:
        if self.offset + 8 > len(self.data):
            raise ValueError("truncated")
        (value,) = struct.unpack_from("<Q", self.data, self.offset)
        self.offset += 8
        return value

    def take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def string(self) -> bytes:
        return self.take(self.u64())


def _string(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


def _read_table(reader: _Reader) -> list[str]:
    """Read a CUDA module's function table; its kernel names."""
    names = []
    for _ in range(reader.u64()):
        names.append(reader.string().decode())
        reader.string()
        reader.take(4 * reader.u64())
        for _ in range(reader.u64()):
            reader.string()
        reader.take(4 * reader.u64())
    return names


def split_cuda_module(payload: bytes) -> tuple[str, bytes, list[str], bytes]:
    """A serialized CUDA module → (format, function table bytes, kernel names, code)."""
    reader = _Reader(payload)
    fmt = reader.string().decode()
    start = reader.offset
    names = _read_table(reader)
    table = payload[start:reader.offset]
    code = reader.string()
    if reader.offset != len(payload):
        raise ValueError("a CUDA module with bytes after its code")
    return fmt, table, names, code


def _modules(blob: bytes):
    """Split a library's serialized modules: (the part before the modules, [(kind, bytes or
    None for "_lib")])."""
    reader = _Reader(blob)
    body = reader.take(reader.u64())
    if reader.offset != len(blob):
        raise ValueError("bytes after the modules")
    reader = _Reader(body)
    indptr = [reader.u64() for _ in range(reader.u64())]
    for _ in range(reader.u64()):
        reader.u64()
    head, modules = body[:reader.offset], []
    for _ in range(len(indptr) - 1):
        kind = reader.string()
        modules.append((kind, None if kind == b"_lib" else reader.string()))
    if reader.offset != len(body):
        raise ValueError("bytes after the last module")
    return head, modules


def cuda_modules(blob: bytes) -> list[tuple[str, list[str], bytes]]:
    """The CUDA modules in a library's serialized modules (its ``__tvm_ffi__library_bin``), as
    TVM's loader reads them: (format, kernel names, code). Format ``cuda`` means source,
    compiled when the library is loaded."""
    modules = []
    for kind, payload in _modules(blob)[1]:
        if kind == b"cuda":
            fmt, _, names, code = split_cuda_module(payload)
            modules.append((fmt, names, code))
    return modules


def replace_cuda_modules(blob: bytes, replace) -> bytes:
    """A library's serialized modules with each CUDA module's format and code replaced by
    ``replace(fmt, kernel names, code)``; everything else byte for byte."""
    try:
        head, modules = _modules(blob)
        out = [head]
        for kind, payload in modules:
            out.append(_string(kind))
            if payload is None:
                continue
            if kind == b"cuda":
                fmt, table, names, code = split_cuda_module(payload)
                fmt, code = replace(fmt, names, code)
                payload = _string(fmt.encode()) + table + _string(code)
            out.append(_string(payload))
    except (ValueError, UnicodeDecodeError, struct.error) as error:
        raise RuntimeError(f"TVM's serialized modules are not laid out as nindsl expects ({error})") from None
    packed = b"".join(out)
    return struct.pack("<Q", len(packed)) + packed


_cuda_runtime = None  # the loaded libtvm_runtime_cuda, kept alive for the life of the process


def load_cuda_runtime() -> None:
    """Load TVM's CUDA runtime where ``import tvm`` did not: it loads it only with TVM's
    compiler, so a runtime-only process (``TVM_USE_RUNTIME_LIB=1``) has no CUDA device
    without this. Without an NVIDIA driver it stays unloaded (the device check says so)."""
    global _cuda_runtime
    import tvm

    if tvm.get_global_func("device_api.cuda", allow_missing=True) is not None:
        return
    from tvm_ffi.libinfo import load_lib_ctypes

    try:
        _cuda_runtime = load_lib_ctypes("tvm", "tvm_runtime_cuda", "RTLD_LOCAL",
                                        extra_lib_paths=list(tvm.libinfo.package_lib_paths()))
    except (OSError, RuntimeError):
        pass
