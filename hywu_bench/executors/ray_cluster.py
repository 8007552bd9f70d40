"""`--executor ray --executor-opt address=HOST:PORT`: one Ray task per run on a running cluster
(`pip install "hywu-bench[ray]"`).

Each run is a remote task with `num_gpus`/`num_cpus` and `max_retries` (Ray reruns a task whose worker
died; the run is idempotent, so that is safe). With `shared_path=true` the task writes into `--out`, which
must be the same path on every node (NFS and the like); without it the task runs in a scratch folder on
its node, returns the run's files (JSON, CSV, text: a few KB) and this process writes them into `--out`.
The driver checks before submitting anything that the head answers and that the cluster has the GPUs and
CPUs one run asks for, so a request no node can meet is an error instead of a task waiting forever.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from hywu_bench import results
from hywu_bench.config import RunSpec
from hywu_bench.errors import UserError
from hywu_bench.executors import ExecutorOptions
from hywu_bench.executors.base import Listener, Outcome, default_jobs_folder, prepare_worker, run_one, write_failure_log
from hywu_bench.locking import RunLock

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 3.0  # the head's port must answer within this
INIT_TIMEOUT_S = 60.0  # and accept this driver within this (a busy head can be slow)
MARKERS = (results.COMPLETE, "FAILED")  # written last by the driver, as the runner does


def parse_address(address: str) -> tuple[str, int]:
    """'HOST:PORT' (or 'ray://HOST:PORT', Ray Client) -> (host, port)."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"executor option address='{address}' is not HOST:PORT "
                        "(e.g. 10.0.0.5:6379, as `ray start --head` prints).")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise UserError(f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
                        f"`ray start --head --port {port}` or fix --executor-opt address=. Nothing was run.") from None


def _ray_task(spec: RunSpec, out: str, overwrite: bool, plugins: Sequence[str], threads: int,
              shared: bool) -> tuple[Outcome, dict[str, str]]:
    """The remote side: one idempotent run; without a shared path, also the run folder's files."""
    import ray

    prepare_worker(threads, plugins)
    job_id = f"ray:{ray.get_runtime_context().get_task_id()}"  # the same when Ray retries the task
    if shared:
        return run_one(spec, out, overwrite, job_id=job_id), {}
    key = hashlib.sha256(out.encode()).hexdigest()[:12]
    scratch = Path(tempfile.gettempdir()) / "hywu-bench-ray" / key  # warm starts stay cached per node
    # This node's scratch copy is disposable: the driver already decided the run is needed.
    outcome = run_one(spec, scratch, overwrite=True, job_id=job_id)
    path = results.run_dir(scratch, spec.scenario_label, spec.run_name, spec.seed)
    files = {}
    if path.is_dir():
        files = {p.name: p.read_text(encoding="utf-8") for p in sorted(path.iterdir())
                 if p.is_file() and not p.name.startswith(".") and p.suffix != ".pt"}
        shutil.rmtree(path, ignore_errors=True)
        for folder in (path.parent, path.parent.parent):  # the run's and scenario's folders, once empty
            try:
                folder.rmdir()
            except OSError:
                break
    outcome.path = None
    return outcome, files


def write_returned(out: Path, spec: RunSpec, files: dict[str, str]) -> Path:
    """A run's files, returned by a task, written into --out under the run's lock; markers last."""
    path = results.run_dir(out, spec.scenario_label, spec.run_name, spec.seed)
    with RunLock(path):
        for child in path.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        for name in sorted(files, key=lambda n: (n in MARKERS, n)):
            results.atomic_write_text(path / name, files[name])
    return path


class RayExecutor:
    def __init__(self, options: ExecutorOptions, plugins: Sequence[str] = ()):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError('--executor ray needs Ray: pip install "hywu-bench[ray]"') from None
        assert options.address is not None  # ExecutorOptions checks it
        check_reachable(options.address)
        self.options, self.address, self.plugins = options, options.address, list(plugins)
        self.num_gpus = options.num_gpus or 0
        self.num_cpus = options.num_cpus or 1
        self.retries = 3 if options.retries is None else options.retries
        self.shared = bool(options.shared_path)

    def _connect(self) -> bool:
        """Connect this process as a driver; False when it already was (then it stays connected).

        `ray.init` retries forever against a port that answers but is not a Ray head, so it runs in a
        thread and is given up on after INIT_TIMEOUT_S (the stuck thread dies with the process)."""
        import ray

        if ray.is_initialized():
            return False
        failure: list[BaseException] = []

        def init() -> None:
            try:
                ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False,
                         namespace="hywu-bench")
            except BaseException as err:  # ConnectionError, a version mismatch, ...
                failure.append(err)

        thread = threading.Thread(target=init, name="ray-init", daemon=True)
        thread.start()
        thread.join(INIT_TIMEOUT_S)
        if thread.is_alive():
            raise UserError(f"{self.address} accepts connections but no Ray head answered there within "
                            f"{INIT_TIMEOUT_S:.0f} s; give the GCS address `ray start --head` printed, and check that "
                            f"this machine can reach the cluster's nodes. Nothing was run.")
        if failure:
            first = next((line for line in str(failure[0]).splitlines() if line.strip()), type(failure[0]).__name__)
            raise UserError(f"could not connect to the Ray cluster at {self.address}: {first}")
        return True

    def _check_resources(self) -> None:
        import ray

        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        most = {k: max((n.get(k, 0) for n in nodes), default=0) for k in ("GPU", "CPU")}
        total = {k: sum(n.get(k, 0) for n in nodes) for k in ("GPU", "CPU")}
        have = f"{len(nodes)} node(s), {total['CPU']:g} CPUs and {total['GPU']:g} GPUs in all"
        if self.num_gpus > 0 and not total["GPU"]:
            raise UserError(f"executor option num_gpus={self.num_gpus:g}: the Ray cluster at {self.address} "
                            f"has no GPU ({have}); "
                            f"runs would wait forever. Drop num_gpus or add GPU nodes. Nothing was submitted.")
        if self.num_gpus > most["GPU"]:
            raise UserError(f"executor option num_gpus={self.num_gpus:g}: "
                            f"no node of the Ray cluster at {self.address} has "
                            f"that many GPUs ({have}); runs would wait forever. Nothing was submitted.")
        if self.num_cpus > most["CPU"]:
            raise UserError(f"executor option num_cpus={self.num_cpus:g}: "
                            f"no node of the Ray cluster at {self.address} has "
                            f"that many CPUs ({have}); runs would wait forever. Nothing was submitted.")

    def run(self, specs: Sequence[RunSpec], out: Path, listener: Listener, overwrite: bool = False) -> list[Outcome]:
        if not specs:
            return []
        import ray

        out = Path(out).resolve()
        jobs = self.options.jobs_folder or default_jobs_folder(out)
        connected = self._connect()
        try:
            self._check_resources()
            return self._run(ray, specs, out, jobs, listener, overwrite)
        finally:
            if connected:
                ray.shutdown()

    def _run(self, ray: Any, specs: Sequence[RunSpec], out: Path, jobs: Path, listener: Listener,
             overwrite: bool) -> list[Outcome]:
        task = ray.remote(_ray_task)
        refs: dict[Any, RunSpec] = {}
        outcomes: list[Outcome] = []
        for spec in specs:
            listener.started(spec)  # submitted; Ray decides when it starts
            known = None if self.shared else _known_on_driver(spec, out, overwrite)
            if known is not None:
                outcomes.append(self._finish(known, jobs, listener))
                continue
            options = dict(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.retries,
                           retry_exceptions=False, name=f"{spec.run_name}-seed{spec.seed}")
            refs[task.options(**options).remote(spec, str(out), overwrite, self.plugins,
                                                max(1, int(self.num_cpus)), self.shared)] = spec
        try:
            while refs:
                (ref,), _ = ray.wait(list(refs), num_returns=1)
                spec = refs.pop(ref)
                outcomes.append(self._finish(self._collect(ray, ref, spec, out), jobs, listener))
        except BaseException:
            for ref in refs:  # an interrupted sweep leaves no tasks behind on the cluster
                ray.cancel(ref, force=True)
            raise
        return outcomes

    def _collect(self, ray: Any, ref: Any, spec: RunSpec, out: Path) -> Outcome:
        try:
            outcome, files = ray.get(ref)
        except ray.exceptions.RayError as err:  # the task's worker died more often than it was retried
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            return Outcome(spec, False, error=f"Ray task failed: {first}", details=str(err))
        if files:
            try:
                outcome.path = write_returned(out, spec, files)
            except (OSError, UserError) as err:
                return Outcome(spec, False, error=f"could not write the returned results: {err}")
        path = results.run_dir(out, spec.scenario_label, spec.run_name, spec.seed)
        if outcome.ok and not results.is_complete(path):
            return Outcome(spec, False, error=f"the task finished but '{path}' is not complete on this machine: "
                                              f"--out is not shared with the cluster's nodes; drop shared_path=true.")
        outcome.path = path if outcome.ok else outcome.path
        return outcome

    @staticmethod
    def _finish(outcome: Outcome, jobs: Path, listener: Listener) -> Outcome:
        if not outcome.ok:
            outcome.log = write_failure_log(jobs, outcome)
        listener.finished(outcome)
        return outcome


def _known_on_driver(spec: RunSpec, out: Path, overwrite: bool) -> Outcome | None:
    """Without a shared path the task cannot see --out, so the driver does what the runner would: reuse a
    complete identical run, and refuse to replace a complete one with a different configuration."""
    stored = results.verdict(spec, out, overwrite=overwrite)
    if stored.kind == "reuse":
        return Outcome(spec, True, stored.path, reused=True)
    if stored.refused:
        return Outcome(spec, False, error=f"UserError: {stored.reason}")
    return None
