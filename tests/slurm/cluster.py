"""A throw-away single-node Slurm cluster on localhost, for the test suite.

Usage (in pytest, tests/ is on sys.path, so the package is ``slurm``; from the repository root
outside pytest it is ``tests.slurm``)::

    from slurm.cluster import LocalSlurmCluster

    with LocalSlurmCluster() as cluster:
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env(), check=True)

What it does (everything as root, no init system needed):

* installs ``slurmctld slurmd slurm-client munge`` via ``tests/slurm/install.sh`` if missing;
* writes ``slurm.conf`` and ``gres.conf`` (no ``cgroup.conf`` is needed) into a fresh temp dir *and* into
  ``/etc/slurm/`` (the Snakemake Slurm jobstep plugin strips ``SLURM_CONF`` from the environment
  of its inner ``srun``, so the config must also be at the default path).  Files that were already
  in ``/etc/slurm/`` are backed up and restored on exit; files this class created are removed;
* starts its own ``munged`` (own key and socket, so a system munged is neither needed nor touched),
  ``slurmctld`` and ``slurmd`` as foreground (``-D`` / ``-F``) children and records their PIDs;
* waits until ``sinfo`` reports the node ``idle``;
* on exit - also when the test failed - cancels all jobs, stops the daemons by PID (TERM, then
  KILL), kills any ``slurmstepd``/job process that still carries this cluster's marker variable,
  and restores ``/etc/slurm``.

The cluster: one node ``localhost`` (real core count, RealMemory below the machine's), a fake GPU
(``Gres=gpu:1``, ``gres.conf``: ``File=/dev/null``), partitions ``cpu`` (default) and ``gpu``,
no accounting (``sacct`` does not work: use ``slurm-status-command: squeue``), ``MinJobAge`` large
so that finished jobs stay visible to ``squeue``.

Only one such cluster can run at a time on a machine (``/etc/slurm/slurm.conf`` is global); a lock
file (``/run/lock/local-slurm-test-cluster.lock``, ``flock``) serialises concurrent users.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
INSTALL_SCRIPT = HERE / "install.sh"
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"  # falls back to `sys.executable -m snakemake`
SLURM_PROFILE = REPO / "profiles" / "slurm"
TEST_OVERLAY = HERE / "test_overlay"
# The real Slurm profile plus the test overlay (Snakemake 9 merges several --profile options; a
# later one replaces whole top-level keys).
SNAKEMAKE_SLURM_ARGS = (
    "--profile",
    str(SLURM_PROFILE),
    "--profile",
    str(TEST_OVERLAY),
)
ETC_SLURM = Path("/etc/slurm")
LOCK_FILE = Path("/run/lock/local-slurm-test-cluster.lock")
MARKER_VAR = "LOCAL_SLURM_TEST_CLUSTER"
REQUIRED_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun", "munged")


class SlurmClusterError(RuntimeError):
    """Slurm could not be installed or started."""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def slurm_installed() -> bool:
    return all(_which(b) for b in REQUIRED_BINARIES)


def install_slurm(timeout: float = 600) -> float:
    """Run install.sh (idempotent). Returns the seconds it took; raises SlurmClusterError."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmClusterError(f"tests/slurm/install.sh failed: {exc}") from exc
    if proc.returncode != 0 or not slurm_installed():
        raise SlurmClusterError(
            f"tests/slurm/install.sh failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}".strip()
        )
    return time.monotonic() - t0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _total_memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise SlurmClusterError("cannot read MemTotal from /proc/meminfo")


def _cpu_count() -> int:
    # Slurm compares the node's CPUs with the hardware (not the affinity mask): use the real count.
    return os.cpu_count() or 1


def _proc_environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read().split(b"\0")
    except OSError:
        return False


class LocalSlurmCluster:
    """Context manager running munged + slurmctld + slurmd on localhost (see module docstring)."""

    node_name = "localhost"
    cpu_partition = "cpu"
    gpu_partition = "gpu"

    def __init__(
        self,
        *,
        install: bool = True,
        start_timeout: float = 60.0,
        lock_timeout: float = 120.0,
        min_job_age: int = 600,
        def_mem_per_cpu: int = 1000,
        keep_dir: bool = False,
    ):
        self.install = install
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.min_job_age = min_job_age
        self.def_mem_per_cpu = def_mem_per_cpu
        self.keep_dir = keep_dir
        self.cpus = _cpu_count()
        total = _total_memory_mb()
        self.real_memory_mb = max(256, min(int(total * 0.8), total - 512))
        self.cluster_id = uuid.uuid4().hex
        self.dir: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.pids: dict[str, int] = {}
        self.install_seconds: float | None = None
        self.start_seconds: float | None = None
        self._lock_fh = None
        self._etc_backup: dict[str, bytes | None] = {}
        self._etc_created_dir = False
        self._started = False

    # ------------------------------------------------------------------ public API
    @property
    def conf_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "slurm.conf"

    def env(self, base: dict | None = None) -> dict:
        """Environment for client commands / snakemake runs against this cluster.

        Carries SLURM_CONF and a marker variable, so that left-over job processes can be
        found and killed on exit.  Inherited SLURM_* / SBATCH_* / SRUN_* variables are dropped.
        """
        env = dict(os.environ if base is None else base)
        for k in list(env):
            if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")):
                del env[k]
        env["SLURM_CONF"] = str(self.conf_path)
        env[MARKER_VAR] = self.cluster_id
        return env

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm client command (e.g. ``cluster.run("sinfo")``) and return the result."""
        return subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=timeout, check=check)

    def snakemake(
        self,
        *args: str,
        cwd: str | Path,
        timeout: float = 90,
        profile: bool = True,
        workflow_profile: str | None = "none",
    ) -> subprocess.CompletedProcess:
        """Run ``.venv/bin/snakemake --profile profiles/slurm --profile tests/slurm/test_overlay
        --workflow-profile none *args`` in ``cwd`` against this cluster.

        ``workflow_profile=None`` drops ``--workflow-profile none`` (then a profiles/default/ next to
        the Snakefile or in ``cwd`` is loaded, and its top-level keys - e.g. set-resources - win over
        both --profile's).  Output (stdout+stderr) is in ``.stdout``.  On timeout the process group is
        killed and ``subprocess.TimeoutExpired`` raised; its Slurm jobs are cancelled by ``stop()``.
        """
        cmd = [str(SNAKEMAKE)] if SNAKEMAKE.exists() else [sys.executable, "-m", "snakemake"]
        if profile:
            cmd += SNAKEMAKE_SLURM_ARGS
        if workflow_profile is not None:
            cmd += ["--workflow-profile", workflow_profile]
        cmd += args
        proc = subprocess.Popen(
            cmd,
            cwd=str(cwd),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise subprocess.TimeoutExpired(cmd, timeout, output=out) from None
        return subprocess.CompletedProcess(cmd, proc.returncode, out, None)

    def __enter__(self) -> LocalSlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        if os.geteuid() != 0:
            raise SlurmClusterError("the local Slurm test cluster must run as root")
        if not slurm_installed():
            if not self.install:
                raise SlurmClusterError("Slurm is not installed (run tests/slurm/install.sh)")
            self.install_seconds = install_slurm()
        else:
            self.install_seconds = 0.0
        self._acquire_lock()
        t0 = time.monotonic()
        # short path: the munge socket path must fit in sockaddr_un (108 bytes)
        self.dir = Path(tempfile.mkdtemp(prefix="slurmtest-", dir="/tmp"))
        self._started = True
        atexit.register(self.stop)  # last resort if the caller never reaches __exit__
        self._write_configs()
        self._start_munged()
        self._start_daemon("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf_path)])
        self._wait_for(
            lambda: self.run("scontrol", "ping", check=False, timeout=10).returncode == 0,
            "slurmctld to answer `scontrol ping`",
        )
        self._start_daemon("slurmd", [_which("slurmd"), "-D", "-N", self.node_name, "-f", str(self.conf_path)])
        self._wait_for(self._node_idle, f"node {self.node_name} to become idle in sinfo")
        self.start_seconds = time.monotonic() - t0

    def _acquire_lock(self) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        # Held open until stop(): the flock lives as long as the handle.
        self._lock_fh = open(LOCK_FILE, "a+")  # noqa: SIM115
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock_fh.close()
                    self._lock_fh = None
                    raise SlurmClusterError(
                        f"another local Slurm test cluster holds {LOCK_FILE} (waited {self.lock_timeout:.0f}s)"
                    ) from None
                time.sleep(0.5)

    def _write_configs(self) -> None:
        d = self.dir
        assert d is not None
        for sub in ("state", "spool", "log", "run"):
            (d / sub).mkdir()
        ctld_port, slurmd_port = _free_port(), _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        self.ctld_port, self.slurmd_port = ctld_port, slurmd_port
        self.munge_socket = d / "run" / "munge.sock"
        host = socket.gethostname().split(".")[0]
        node = (
            f"NodeName={self.node_name} NodeAddr=127.0.0.1 NodeHostname={self.node_name} CPUs={self.cpus} "
            f"RealMemory={self.real_memory_mb} Gres=gpu:1 State=UNKNOWN"
        )
        slurm_conf = f"""\
# Written by tests/slurm/cluster.py (LocalSlurmCluster {self.cluster_id}); removed again on exit.
ClusterName=localtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={self.def_mem_per_cpu}
GresTypes=gpu
ReturnToService=2
# keep finished jobs visible to squeue (Snakemake: slurm-status-command=squeue needs >= 3x the first wait)
MinJobAge={self.min_job_age}
KillWait=5
InactiveLimit=0
SlurmdTimeout=300
SlurmctldTimeout=120
{node}
PartitionName={self.cpu_partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP
PartitionName={self.gpu_partition} Nodes={self.node_name} Default=NO MaxTime=INFINITE State=UP
"""
        gres_conf = f"""\
# Written by tests/slurm/cluster.py: a fake GPU (no device behind it).
AutoDetect=off
NodeName={self.node_name} Name=gpu File=/dev/null
"""
        # No cgroup.conf: no cgroup plugin is loaded (proctrack/linuxproc, task/none, jobacct none).
        files = {"slurm.conf": slurm_conf, "gres.conf": gres_conf}
        for name, text in files.items():
            (d / name).write_text(text)
        # /etc/slurm copies (backup whatever was there)
        if not ETC_SLURM.exists():
            ETC_SLURM.mkdir(parents=True)
            self._etc_created_dir = True
        for name, text in files.items():
            target = ETC_SLURM / name
            old = target.read_bytes() if target.exists() else None
            if old is not None and old.startswith(b"# Written by tests/slurm/cluster.py"):
                old = None  # left behind by a killed earlier run: remove on exit, do not restore
            self._etc_backup[name] = old
            target.write_text(text)

    def _restore_etc(self) -> None:
        for name, old in self._etc_backup.items():
            target = ETC_SLURM / name
            try:
                if old is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(old)
            except OSError:
                pass
        self._etc_backup.clear()
        if self._etc_created_dir:
            with contextlib.suppress(OSError):
                ETC_SLURM.rmdir()
            self._etc_created_dir = False

    def _daemon_env(self) -> dict:
        env = self.env()
        env.pop("SLURM_CONF", None)  # daemons get -f
        return env

    def _start_munged(self) -> None:
        d = self.dir
        key = d / "run" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        munged = _which("munged")
        cmd = [
            munged,
            "-F",
            "--force",
            f"--socket={self.munge_socket}",
            f"--key-file={key}",
            f"--pid-file={d}/run/munged.pid",
            f"--log-file={d}/log/munged.log",
            f"--seed-file={d}/run/munged.seed",
        ]
        self._spawn("munged", cmd)
        self._wait_for(lambda: self.munge_socket.exists(), "munged to create its socket", timeout=20)

    def _start_daemon(self, name: str, cmd: list) -> None:
        self._spawn(name, cmd)

    def _spawn(self, name: str, cmd: list) -> None:
        assert self.dir is not None
        # The daemon writes to it for its whole life; stop() closes it.
        log = open(self.dir / "log" / f"{name}.stdout", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._daemon_env(),
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        self.pids[name] = proc.pid

    def _node_idle(self) -> bool:
        res = self.run("sinfo", "-h", "-N", "-n", self.node_name, "-o", "%t", check=False, timeout=10)
        states = set(res.stdout.split())
        return res.returncode == 0 and bool(states) and states <= {"idle"}

    def _wait_for(self, predicate, what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmClusterError(
                        f"{name} exited with rc={proc.returncode} while waiting for {what}\n{self.logs()}"
                    )
            try:
                if predicate():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise SlurmClusterError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def logs(self, tail: int = 30) -> str:
        """The last lines of every daemon log (for error messages)."""
        if self.dir is None:
            return ""
        out = []
        for p in sorted((self.dir / "log").glob("*")):
            try:
                lines = p.read_text(errors="replace").splitlines()[-tail:]
            except OSError:
                continue
            out.append(f"--- {p.name}\n" + "\n".join(lines))
        return "\n".join(out)

    # ------------------------------------------------------------------ stop
    def _marked_pids(self) -> list[int]:
        needle = f"{MARKER_VAR}={self.cluster_id}".encode()
        me = os.getpid()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != me and _proc_environ_has(int(entry), needle):
                found.append(int(entry))
        return found

    @staticmethod
    def _wait_for_orphan_zombies(timeout: float = 5.0) -> None:
        """slurmstepd double-forks: finished steps become zombies of PID 1, which may reap them only
        after a moment. Wait (never kill: they are already dead) so `pgrep slurm` is clean after us."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = False
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        stat = fh.read()
                except OSError:
                    continue
                comm = stat[stat.find("(") + 1 : stat.rfind(")")]
                if comm.startswith("slurmstepd") and stat[stat.rfind(")") + 2] == "Z":
                    left = True
                    break
            if not left:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        if not self._started:
            self._release_lock()
            return
        # 1. cancel every job of this (private) cluster while the daemons still run
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--quiet", "--user=root", check=False, timeout=15)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    res = self.run("squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i", check=False, timeout=10)
                    if res.returncode != 0 or not res.stdout.strip():
                        break
                    time.sleep(0.3)
            except (OSError, subprocess.SubprocessError):
                pass
        # 2. stop the daemons by PID (reverse start order)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        # 3. anything still carrying this cluster's marker (slurmstepd, job shells, srun, ...)
        for _ in range(3):
            pids = self._marked_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        self._wait_for_orphan_zombies()
        self._restore_etc()
        if self.dir is not None and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fh is not None:
            try:
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            finally:
                self._lock_fh.close()
                self._lock_fh = None


if __name__ == "__main__":  # manual smoke test: python tests/slurm/cluster.py
    with LocalSlurmCluster(keep_dir=False) as c:
        print(f"install {c.install_seconds:.1f}s, start {c.start_seconds:.1f}s, pids {c.pids}")
        print(c.run("sinfo").stdout)
        print(c.run("scontrol", "show", "node", c.node_name).stdout)
