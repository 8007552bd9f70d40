"""A one-machine Ray head on 127.0.0.1, for trying `--executor ray`, the tests and the overhead benchmark.

It is started as `ray start --head --block` in a session of its own and stopped by ending exactly that
session's processes (never `ray stop`, which ends every Ray process on the machine). Usage statistics are
off, it listens on loopback only, and its temp folder is a short path of its own (Ray's unix sockets
live there, and a socket path may not exceed 107 characters, which pytest's tmp paths can).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except OSError:  # gone meanwhile
                continue
    return pids


@contextlib.contextmanager
def _loopback_driver() -> Iterator[None]:
    """Ray resolves 127.0.0.1 to the machine's routable address unless told this is a local-only cluster."""
    previous = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    patched = constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False)
    if patched:  # ray was imported before: its constant was read from the environment already
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if patched:
            constants.ENABLE_RAY_CLUSTER = True
        if previous is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = previous


@contextlib.contextmanager
def loopback_head(num_cpus: int = 2, object_store_mb: int = 100, scratch: str | Path | None = None,
                  log: str | Path | None = None) -> Iterator[str]:
    """Start a head with `num_cpus` CPUs and no GPU; yields its address 127.0.0.1:PORT. `scratch` becomes
    the workers' TMPDIR (where tasks without a shared path run); `log` receives the head's output."""
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    port = _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # stop at once when told to
    if scratch is not None:
        env["TMPDIR"] = str(scratch)
    # `ray start` of this very Python (its `ray` script may not be on PATH)
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
               "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
               f"--object-store-memory={object_store_mb * 10**6}", f"--temp-dir={temp}",
               "--include-dashboard=false", "--disable-usage-stats"]
    output = open(log or os.devnull, "w")
    head = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(head, port)
        with _loopback_driver():
            yield f"127.0.0.1:{port}"
    finally:
        _stop(head)
        output.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(head: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited with code {head.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the Ray head did not open port {port} within {START_TIMEOUT_S:.0f} s")


def _stop(head: subprocess.Popen) -> None:
    """SIGTERM to `ray start`, which ends its children; then SIGKILL to whatever of its session is left."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    for pid in _session_pids(head.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    head.wait()
