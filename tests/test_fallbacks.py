"""Every fallback is said: a narrow build that meant AMX tiles and got vector instructions says
why, on the console and in its manifest. (No AMX here: the probe's verdict is planted.)"""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")

from nindsl.tvm.narrow import bf16, int8  # noqa: E402
from nindsl.tvm.narrow.kernels import amx_probe as amx  # noqa: E402
from nindsl.tvm.profiles import Profile  # noqa: E402

pytestmark = pytest.mark.tvm
SAPPHIRE = Profile(name="spr", target={"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2})


@pytest.mark.parametrize("module, meant, instead", [(int8, "amx-int8", "avx512vnni"),
                                                     (bf16, "amx-bf16", "avx512bf16")])
def test_a_failed_tile_probe_is_said_and_recorded(monkeypatch, module, meant, instead):
    monkeypatch.setattr(module, "runs_here", lambda target: True)  # as on a Sapphire Rapids
    monkeypatch.setattr(amx, "tile_problem", lambda *_: "were killed by SIGILL")
    _, isa = module.isa_of(SAPPHIRE)
    assert isa.name == instead and isa.fallback == f"this CPU's AMX tiles were killed by SIGILL in a probe: {instead} instead"
    monkeypatch.setattr(amx, "tile_problem", lambda *_: "")
    _, isa = module.isa_of(SAPPHIRE)
    assert isa.name == meant and isa.fallback == ""


def test_the_manifest_keeps_the_fallback():
    from types import SimpleNamespace

    from nindsl.onnx.quantize import Agreement
    from nindsl.tvm.deploy.artifact import _narrow_manifest
    from nindsl.tvm.narrow.kernels.bf16 import bf16_isa

    import tvm

    isa = bf16_isa(tvm.target.Target(SAPPHIRE.target)).vector
    from dataclasses import replace

    narrow = SimpleNamespace(isa=replace(isa, fallback="tiles differ"), blocks={},
                             agreement=Agreement(10, 1.0, 0.0, None, None))
    manifest = _narrow_manifest("bf16", narrow, SimpleNamespace(source="digits", images=[]))
    assert manifest["bf16"]["fallback"] == "tiles differ" and manifest["bf16"]["instructions"] == "avx512bf16"
    narrow.isa = isa
    assert "fallback" not in _narrow_manifest("bf16", narrow, SimpleNamespace(source="digits", images=[]))["bf16"]
