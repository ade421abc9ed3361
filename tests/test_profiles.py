"""Target profiles are data: every file in backends/ loads; mistakes are located."""

from __future__ import annotations

import pytest

from nindsl.kernel.diagnostics import NindslError
from nindsl.tvm.profiles import Profile, load_profile, parse_profile, profile_names

from conftest import ROOT

BACKENDS = sorted((ROOT / "backends").glob("*.toml"))


def test_the_installed_profiles_are_the_files_in_backends():
    assert profile_names() == sorted(p.stem for p in BACKENDS)
    assert {"llvm", "cuda", "h100"} <= set(profile_names())


@pytest.mark.parametrize("path", BACKENDS, ids=lambda p: p.stem)
def test_every_profile_loads(path):
    profile = load_profile(str(path))
    assert profile == load_profile(path.stem)
    assert profile.name == path.stem and profile.device in ("cpu", "cuda")
    assert "kind" in profile.target and profile.parity.rtol > 0
    if profile.device == "cuda":
        assert profile.schedule.untuned == "dlight"


def test_h100_profile_targets_sm_90():
    assert load_profile("h100").target["arch"] == "sm_90"


def test_profiles_are_frozen():
    with pytest.raises(AttributeError):
        load_profile("llvm").name = "x"  # type: ignore[misc]


def test_unknown_keys_are_refused_with_their_line():
    text = 'name = "x"\ndevice = "cpu"\n\n[target]\nkind = "llvm"\n\n[tuning]\ntrials_per_tsk = 3\n'
    with pytest.raises(NindslError) as error:
        parse_profile(text, "x.toml")
    diagnostic = error.value.diagnostics[0]
    assert "unknown key `trials_per_tsk`" in diagnostic.message
    assert diagnostic.span.line == 8 and "did you mean `trials_per_task`" in diagnostic.help


@pytest.mark.parametrize("text,message", [
    ('name = "x"\n[target]\nkind = "llvm"\n[parity]\nrtol = "tight"\n', "`rtol` in [parity] must be float"),
    ('name = "x"\ndevice = "tpu"\n[target]\nkind = "llvm"\n', "`device` must be one of cpu, cuda"),
    ('name = "x"\n', "needs a [target] table"),
    ('name = "x"\n[target\n', "not valid TOML"),
    ('name = "x"\ndevice = "cuda"\n[target]\nkind = "cuda"\n[schedule]\nuntuned = "magic"\n', "`untuned` must be"),
])
def test_bad_profiles(text, message):
    with pytest.raises(NindslError) as error:
        parse_profile(text, "bad.toml")
    assert message in error.value.diagnostics[0].message


def test_target_names_typos_and_inline_tables():
    with pytest.raises(NindslError) as error:
        load_profile("lvm")
    assert "did you mean `llvm`" in error.value.diagnostics[0].help
    inline = load_profile('{"kind": "llvm", "num-cores": 1}')
    assert inline == Profile(name="llvm", description="inline target", device="cpu",
                             target={"kind": "llvm", "num-cores": 1})
    with pytest.raises(NindslError):
        load_profile('{"cores": 1}')


@pytest.mark.tvm
def test_a_host_build_uses_only_the_features_this_machine_lets_code_use():
    """`mcpu = "host"` names the CPU model; a virtual machine may hide some of its features (an
    Emerald Rapids without AMX, AVX512-BF16 and AVX512-FP16 in /proc/cpuinfo): code built for the
    name alone would be refused here, or die with SIGILL."""
    import tvm

    from nindsl.kernel.machine import missing_cpu_features
    from nindsl.tvm.profiles import cpu_features, resolved_target

    target = tvm.target.Target(resolved_target(load_profile("llvm")))
    assert not missing_cpu_features(cpu_features(target))


@pytest.mark.tvm
def test_features_a_hypervisor_hides_are_turned_off_in_a_host_target(monkeypatch):
    import tvm
    from tvm.target import codegen

    from nindsl.kernel import machine
    from nindsl.tvm import profiles

    monkeypatch.setattr(codegen, "llvm_get_system_cpu", lambda: "sapphirerapids")
    flags = frozenset("avx avx2 fma f16c avx512f avx512bw avx512dq avx512vl avx512cd avx512_vnni".split())
    monkeypatch.setattr(machine, "cpu_flags", lambda *_: flags)
    target = profiles.resolved_target(load_profile("llvm"))
    assert target["mcpu"] == "sapphirerapids"
    assert {"-amx-tile", "-amx-int8", "-amx-bf16", "-avx512bf16", "-avx512fp16"} <= set(target["mattr"])
    features = profiles.cpu_features(tvm.target.Target(target))
    assert "avx512vnni" in features and not {"amx-int8", "avx512bf16"} & set(features)
