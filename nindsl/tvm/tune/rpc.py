"""Tuning over TVM RPC: candidates measured on devices registered with a tracker.

    nindsl rpc tracker                                   # 127.0.0.1:9190
    nindsl rpc server --tracker 127.0.0.1:9190 --key cpu # as many as there are devices
    nindsl compile SPEC --target llvm --tune --rpc 127.0.0.1:9190 --key cpu

Candidates are still built here; the tracker hands each to a free server with that key,
which loads and times it. An RPC server runs whatever library it is sent, so the tracker
and servers that nindsl starts listen on the loopback interface unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys

from ...kernel.diagnostics import NindslError
from ...kernel.progress import SILENT, Progress
from ..env import require_tvm

LOOPBACK = "127.0.0.1"
SESSION_TIMEOUT = 60  # seconds one measurement may take on the remote device


def _usage(message: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0504", message, None, help)


def parse_address(text: str, what: str = "--rpc") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _usage(f"{what} must be HOST:PORT, got `{text}`", f"for example {what} {LOOPBACK}:9190")
    return host, int(port)


def servers(address: str, key: str) -> int:
    """How many servers with ``key`` the tracker at ``address`` knows; a clear error if none."""
    from tvm import rpc

    host, port = parse_address(address)
    try:
        # TVM retries a refused connection for a minute: ask once, briefly, first
        socket.create_connection((host, port), timeout=5).close()
        summary = rpc.connect_tracker(host, port).summary()
    except (OSError, RuntimeError) as error:
        raise _usage(f"cannot reach the RPC tracker at {host}:{port}: {error}",
                     "start one with: nindsl rpc tracker") from None
    count = sum(1 for server in summary.get("server_info", []) if server.get("key", "").split(":")[-1] == key)
    if count == 0:
        known = sorted({s.get("key", "").split(":")[-1] for s in summary.get("server_info", [])} - {""})
        raise _usage(f"no RPC server with key `{key}` is registered at {host}:{port}"
                     + (f" (keys there: {', '.join(known)})" if known else ""),
                     f"start one with: nindsl rpc server --tracker {host}:{port} --key {key}")
    return count


def runner(address: str, key: str):
    """A MetaSchedule runner that measures on every server with ``key``, in parallel."""
    from tvm.s_tir import meta_schedule as ms

    count = servers(address, key)
    host, port = parse_address(address)
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                 session_timeout_sec=SESSION_TIMEOUT)
    return ms.runner.RPCRunner(rpc_config=config, max_workers=count)


def measuring_runner(address: str | None, key: str | None):
    """Where tuning measures candidates: ``"local"``, or the devices behind ``address`` with ``key``."""
    if key and not address:
        raise _usage("--key names a device at an RPC tracker: give --rpc HOST:PORT too")
    if not address:
        return "local"
    parse_address(address)
    if not key:
        raise _usage("--rpc needs --key KEY: the key the devices registered under",
                     "list them with: python -m tvm.exec.query_rpc_tracker --port PORT")
    return runner(address, key)


def launch(role: str, host: str = LOOPBACK, port: int | None = None, tracker: str | None = None,
           key: str | None = None, progress: Progress = SILENT) -> int:
    """Run TVM's own RPC ``tracker`` or ``server``, on loopback by default, until it ends or
    this process is interrupted; return its exit status.

    TVM's tracker and server run in a child process in a session of their own, so Ctrl-C
    reaches nindsl alone: it stops their whole process group and raises KeyboardInterrupt,
    which the command line reports as one line (TVM itself would print a traceback from
    each of its processes). SIGTERM and SIGHUP stop them the same way.
    """
    require_tvm()
    try:
        import tornado  # noqa: F401 - TVM's tracker and server need it
    except ImportError:
        raise _usage("TVM's RPC tracker and server need the `tornado` package",
                     "install it with: pip install 'nindsl[tvm]'") from None
    if port is not None and not 0 < port < 65536:
        raise _usage(f"--port must be between 1 and 65535, got {port}")
    command = [sys.executable, "-m", f"tvm.exec.rpc_{role}", "--host", host]
    if role == "tracker":  # exactly this port: it is the one tuning is told
        port = port or 9190
        command += ["--port", str(port), "--port-end", str(port + 1)]
    else:
        if not tracker or not key:
            raise _usage("`nindsl rpc server` needs --tracker HOST:PORT and --key KEY",
                         "the key names the kind of device; tuning asks for it with --key")
        tracker_host, _ = parse_address(tracker, "--tracker")
        _resolve(tracker_host, "--tracker")
        port = port or 9090  # the first free one from here: several servers may share a machine
        command += ["--port", str(port), "--port-end", str(port + 100), "--tracker", tracker, "--key", key]
    _check_listen(host, port if role == "tracker" else 0)
    if not loopback_only(host):
        progress.note(f"warning: listening on {host}: an RPC {role} accepts connections from other "
                      "machines and its servers run any code sent to them; do this on a trusted network only")
    else:
        progress.note(f"listening on {host} only (this machine); --host ADDRESS to accept others")
    sys.stdout.flush()
    sys.stderr.flush()
    return _supervise(command)


def _resolve(host: str, what: str) -> list:
    """The addresses ``host`` names, or a clear error (TVM's child would print a traceback)."""
    if not host.strip():
        raise _usage(f"{what} is empty: give an address", f"for example {what} {LOOPBACK}")
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise _usage(f"{what} `{host}` is not an address this machine can resolve ({error})",
                     f"for example {what} {LOOPBACK}") from None


def _check_listen(host: str, port: int) -> None:
    """Refuse, before TVM's child starts, a --host this machine cannot listen on (an address of
    another machine, an unknown name) or a tracker's --port another program holds."""
    family, kind, protocol, _, address = _resolve(host, "--host")[0]
    try:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address[0], port, *address[2:]))
    except OSError as error:
        where = f"{host}:{port}" if port else host
        raise _usage(f"cannot listen on {where}: {error.strerror or error}",
                     "--host takes an address of this machine; a tracker's --port must be free") from None


def loopback_only(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback (`localhost`, 127.0.0.1,
    ::1): no other machine can connect there. A name that does not resolve is not."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(entry[4][0].split("%")[0]).is_loopback for entry in found)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _supervise(command: list[str]) -> int:
    """Run ``command`` in a session of its own; on an interrupt, stop its process group."""
    stops = (signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, _interrupt) for s in stops}
    child = None
    try:
        child = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        return child.wait()
    except KeyboardInterrupt:
        if child is not None:
            _stop_group(child)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_group(child: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to the child's process group (TVM's worker processes included), then SIGKILL."""
    for number in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, number)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
