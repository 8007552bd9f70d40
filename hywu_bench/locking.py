"""One writer per run folder: a lock file holding the owner's host and pid; stale locks are taken over.

A run started by a cluster engine also records the engine's job id (`submitit:4242_3`, `ray:<task id>`),
which stays the same when the engine requeues or retries the job, possibly on another host: a lock left
by an earlier attempt of the same job is then stale too, although its host cannot be checked from here.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from hywu_bench.errors import UserError

LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    def __init__(self, run_path: Path, job_id: str | None = None):
        self.path = run_path / LOCK
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}
        if job_id:
            self.owner["job"] = job_id

    def __enter__(self) -> "RunLock":
        self.created = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._held_by_a_live_process():
                    holder = self._read()
                    raise UserError(f"run folder '{self.path.parent}' is being written by another process "
                                    f"(pid {holder.get('pid')} on {holder.get('host')}); wait for it, or use --name "
                                    f"to write a separate run.") from None
                self.path.unlink(missing_ok=True)  # stale: its owner died
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self.owner, fh)
            return self
        raise UserError(f"could not take the lock '{self.path}'; remove it if no run is writing there.")

    def __exit__(self, *exc: object) -> None:
        if self._read() == self.owner:
            self.path.unlink(missing_ok=True)
            for folder in self.created:  # a run that failed before writing anything leaves no folder behind
                try:
                    folder.rmdir()
                except OSError:
                    break

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _held_by_a_live_process(self) -> bool:
        holder = self._read()
        if not holder:  # unreadable or empty: its writer died before finishing it
            return False
        if holder.get("job") and holder.get("job") == self.owner.get("job"):
            return False  # an earlier attempt of this very job: the engine requeues only after it ended
        if holder.get("host") != socket.gethostname():
            return True  # cannot check another machine's processes: assume alive
        return _alive(int(holder.get("pid", -1)))
