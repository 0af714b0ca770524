"""One writer per run: a lock file beside a run's resume state, naming the job that holds it.

If the Snakemake process dies (an SSH hang-up) while its Slurm jobs keep running and the user restarts
the workflow, a second job would train the same run in the same resume folder: histories interleave and
one job's clean-up deletes the other's state. The lock stops the second job at once, naming the first;
a lock whose holder is gone (its process, or its Slurm job) is taken over, so a retried or requeued job
continues.

Snakemake's own lock on a working directory outlives a Snakemake killed with SIGKILL (or a power loss),
and the same command then stops with "Directory cannot be locked". ``record_snakemake_lock_owner`` notes
which process took that lock; ``release_locks_of_dead_snakemake`` removes the lock when that process is
gone, as ``snakemake --unlock`` would, and leaves it to a live or unknown holder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from leukemia_dtl.core.errors import UserError

log = logging.getLogger("leukemia_dtl")


def this_job() -> dict:
    """Who is running: host, process id and, inside Slurm, the job id."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def describe(holder: dict) -> str:
    job = f"Slurm job {holder['slurm_job_id']}, " if holder.get("slurm_job_id") else ""
    return f"{job}process {holder.get('pid')} on {holder.get('host')} (since {holder.get('since', '?')})"


def _slurm_job_active(job_id: str) -> bool | None:
    """Whether Slurm still runs or queues ``job_id``; None when squeue cannot tell (not installed, no answer)."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        result = subprocess.run([squeue, "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        # squeue rejects the id of a job that ended long enough ago to be purged.
        return False if "Invalid job id" in result.stderr else None
    return bool(result.stdout.strip())


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def holder_alive(holder: dict, me: dict) -> bool:
    """Whether the lock's holder may still be writing; a holder nobody can check counts as alive."""
    job_id = holder.get("slurm_job_id")
    if job_id and job_id == me["slurm_job_id"]:
        return False  # this very Slurm job, requeued after preemption or a node failure
    if job_id:
        active = _slurm_job_active(job_id)
        if active is not None:
            return active
    if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int):
        return _process_alive(holder["pid"])
    return True


@contextlib.contextmanager
def run_lock(lock_file: str | os.PathLike, run_name: str) -> Iterator[None]:
    """Hold ``lock_file`` while the block runs; UserError at once if a live job holds it."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    me = this_job() | {"since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            descriptor = os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock_file.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}  # written half by a job killed at that instant: nobody holds it
            if holder and holder_alive(holder, me):
                raise UserError(
                    f"{run_name} is being trained by {describe(holder)}: two jobs on one run would interleave "
                    f"its history and delete each other's resume state, so this job stops. Let that job "
                    f"finish, or cancel it; if it is gone and this message stays, delete {lock_file}."
                ) from None
            log.warning("%s: taking over the lock %s of %s, which is gone", run_name, lock_file, describe(holder))
            lock_file.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        lock_file.unlink(missing_ok=True)


SNAKEMAKE_LOCK_OWNER = "leukemia_dtl_lock_owner.json"


def record_snakemake_lock_owner(snakemake_dir: str | os.PathLike = ".snakemake") -> None:
    """Note this process as the holder of Snakemake's locks (call from ``onstart``, when it holds them)."""
    owner = Path(snakemake_dir) / SNAKEMAKE_LOCK_OWNER
    partial = owner.with_name(owner.name + ".partial")
    partial.write_text(json.dumps(this_job()))
    os.replace(partial, owner)


def release_locks_of_dead_snakemake(snakemake_dir: str | os.PathLike = ".snakemake") -> bool:
    """Remove Snakemake's locks if the process that recorded itself as their holder is gone; True if removed.

    Only a holder on this host can be checked. Locks newer than the record were taken by a Snakemake that
    has not recorded itself yet, so they stay.
    """
    locks = Path(snakemake_dir) / "locks"
    owner_file = Path(snakemake_dir) / SNAKEMAKE_LOCK_OWNER
    lock_files = list(locks.glob("*.lock")) if locks.is_dir() else []
    if not lock_files or not owner_file.exists():
        return False
    if max(lock.stat().st_mtime for lock in lock_files) > owner_file.stat().st_mtime:
        return False
    try:
        owner = json.loads(owner_file.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    if _process_alive(owner["pid"]):
        return False
    log.warning("Removing the locks of Snakemake process %d, which is gone (killed?): %s", owner["pid"], locks)
    shutil.rmtree(locks)
    return True
