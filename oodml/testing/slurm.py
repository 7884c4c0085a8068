"""A private single-node Slurm cluster on this machine, for tests and for trying a study by hand.

Everything lives in one folder: a ``slurm.conf`` with its own ports on 127.0.0.1, state, spool
and log folders, a munge key and socket. :class:`SlurmCluster` starts ``munged``, ``slurmctld``
and ``slurmd`` as processes it owns (foreground daemons, children of this process), waits for
``sinfo`` to show the node idle, and stops exactly those processes (by pid) afterwards::

    with SlurmCluster(tmp_dir) as cluster:
        env = cluster.env()            # SLURM_CONF for sbatch/squeue/scontrol
        subprocess.run(["sbatch", ...], env=env)

From a shell (``make slurm-up`` / ``make slurm-down``)::

    python -m oodml.testing.slurm up   --dir .slurm     # prints `export SLURM_CONF=...`
    python -m oodml.testing.slurm down --dir .slurm

``up`` leaves the daemons running in the background (their pids in ``<dir>/pids.json``);
``down`` stops those pids only. The configuration follows the simplest setup that works in a
container: ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``, no accounting
(``sacct`` is unavailable, as on many small clusters), ``OverTimeLimit=1`` (a task is killed one
minute after its time limit, so that submitit's warning signal always comes first even at the
one-minute minimum limit a test can ask for), ``SelectType=select/cons_tres`` with
``CR_CPU`` (CPUs are consumed, memory is not), the node sized from ``slurmd -C``. Daemons run as
the current user (root when apt installed the packages here), which is also the job user.

:func:`ensure_slurm` installs Debian's ``slurm-wlm`` and ``munge`` with apt when they are missing
and the user is root; otherwise it raises :class:`SlurmUnavailable` with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from oodml.cli import add_version, run_cli
from oodml.errors import OodmlError

__all__ = ["SlurmCluster", "SlurmUnavailable", "ensure_slurm", "free_port", "main"]

#: Programs the cluster needs (from Debian's slurm-wlm, slurm-client and munge packages).
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol", "scancel")
PARTITION = "debug"
NODE = "oodml-node"


class SlurmUnavailable(OodmlError):
    """Slurm cannot be started here (not installed and cannot be installed, or a daemon failed)."""


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (
            str(p)
            for d in ("/usr/sbin", "/usr/bin", "/sbin")
            if (p := Path(d) / name).is_file() and os.access(p, os.X_OK)
        ),
        None,
    )


def missing_programs() -> list[str]:
    """The programs of :data:`PROGRAMS` not found on PATH (or in /usr/sbin)."""
    return [p for p in PROGRAMS if _find(p) is None]


def ensure_slurm(install: bool = True, quiet: bool = True) -> None:
    """Make sure Slurm and munge are installed; install them with apt-get when root and ``install``.

    Raises :class:`SlurmUnavailable` (one line: what is missing and how to get it) otherwise.
    """
    missing = missing_programs()
    if not missing:
        return
    what = ", ".join(missing)
    if not install:
        raise SlurmUnavailable(f"Slurm programs missing ({what}); install Debian's slurm-wlm and munge packages")
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            f"Slurm programs missing ({what}) and not root to install them; run `sudo apt-get install slurm-wlm munge`"
        )
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"Slurm programs missing ({what}) and no apt-get to install them on this system")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    out = subprocess.DEVNULL if quiet else None
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    ok = subprocess.run(cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL).returncode == 0
    if not ok:  # package lists not downloaded yet (fresh container)
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        ok = subprocess.run(cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL).returncode == 0
    missing = missing_programs()
    if not ok or missing:
        raise SlurmUnavailable(f"apt-get could not install slurm-wlm and munge (still missing: {', '.join(missing)})")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """``CPUs=... RealMemory=...`` of this machine, from ``slurmd -C`` (memory 10% under it)."""
    cpus, mem = os.cpu_count() or 1, 1024
    with contextlib.suppress(Exception):
        text = subprocess.run([_find("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
        fields = dict(re.findall(r"(\w+)=(\S+)", text.splitlines()[0]))
        parts = [
            f"{k}={fields[k]}"
            for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
            if k in fields
        ]
        mem = int(int(fields.get("RealMemory", "1024")) * 0.9)
        return " ".join(parts) + f" RealMemory={mem}"
    return f"CPUs={cpus} RealMemory={mem}"


class SlurmCluster:
    """A private single-node Slurm cluster in ``folder`` (see the module docstring).

    ``start()`` / ``stop()``, or use it as a context manager. ``env()`` is the environment for
    Slurm's commands (``SLURM_CONF``); :meth:`run` runs one of them.
    """

    def __init__(self, folder: str | os.PathLike, *, max_time: str = "INFINITE", min_job_age: int = 300):
        self.dir = Path(folder).resolve()
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.max_time = max_time
        self.min_job_age = min_job_age
        self.procs: dict[str, subprocess.Popen] = {}
        self.pids: dict[str, int] = {}

    # ---- configuration --------------------------------------------------------------------
    def env(self, base: dict | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def write_config(self) -> None:
        d = self.dir
        for sub in ("state", "spool", "log", "munge"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "munge", 0o700)
        key = d / "munge" / "munge.key"
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(1024))
        user = _user()
        ctld_port, slurmd_port = free_port(), free_port()
        while slurmd_port == ctld_port:
            slurmd_port = free_port()
        host = socket.gethostname()
        text = f"""# private single-node cluster written by oodml.testing.slurm
ClusterName=oodml
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "slurmctld.pid"}
SlurmdPidFile={d / "slurmd.pid"}
SlurmctldLogFile={d / "log" / "slurmctld.log"}
SlurmdLogFile={d / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MinJobAge={self.min_job_age}
KillWait=5
OverTimeLimit=1
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
Waittime=0
SchedulerParameters=sched_interval=2
PlugStackConfig={d / "plugstack.conf"}
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 {_node_line()} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime={self.max_time} State=UP
"""
        (d / "plugstack.conf").write_text("")
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf)

    # ---- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.dir / "log" / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen(
                cmd,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        self.pids[name] = self.procs[name].pid

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a Slurm command (``sinfo``, ``squeue``, ``scontrol``, ...) against this cluster."""
        cmd = [_find(args[0]) or args[0], *args[1:]]
        res = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(args)} failed: {(res.stderr or res.stdout).strip()}")
        return res

    def start(self, timeout: float = 90) -> SlurmCluster:
        """Write the configuration, start the three daemons and wait for the node to be idle."""
        ensure_slurm()
        self.write_config()
        try:
            self._spawn(
                "munged",
                [
                    _find("munged"),
                    "--foreground",
                    "--force",
                    f"--socket={self.munge_socket}",
                    f"--key-file={self.dir / 'munge' / 'munge.key'}",
                    f"--pid-file={self.dir / 'munge' / 'munged.pid'}",
                    f"--seed-file={self.dir / 'munge' / 'munged.seed'}",
                    f"--log-file={self.dir / 'log' / 'munged.log'}",
                ],
            )
            self._wait(lambda: self.munge_socket.exists(), timeout, "munged did not create its socket")
            self._spawn("slurmctld", [_find("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", [_find("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
            self._wait(self._node_idle, timeout, "the node did not become idle")
        except BaseException:
            self.stop()
            raise
        self._save_pids()
        return self

    def _node_idle(self) -> bool:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with status {p.returncode}; see {self.dir / 'log'}")
        res = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=20)
        return res.returncode == 0 and res.stdout.strip().rstrip("*") == "idle"

    def _wait(self, cond, timeout: float, what: str) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"{what} within {timeout:.0f} s; see the logs in {self.dir / 'log'}")

    def _save_pids(self) -> None:
        tmp = self.dir / "pids.json.tmp"
        tmp.write_text(json.dumps(self.pids, sort_keys=True))
        os.replace(tmp, self.dir / "pids.json")

    def stop(self, timeout: float = 30) -> None:
        """Stop the daemons this cluster started (by pid, slurmd first), waiting for them to exit.

        Job steps still running under slurmd are cancelled first (``scancel`` of every job).
        """
        if not self.pids and (self.dir / "pids.json").is_file():
            self.pids = {k: int(v) for k, v in json.loads((self.dir / "pids.json").read_text()).items()}
        if self.pids.get("slurmctld") and _alive(self.pids["slurmctld"]):
            with contextlib.suppress(Exception):
                ids = self.run("squeue", "-h", "-o", "%A", check=False, timeout=15).stdout.split()
                if ids:
                    self.run("scancel", *sorted(set(ids)), check=False, timeout=15)
                    end = time.time() + timeout  # let slurmd end the job steps before it goes
                    while (
                        time.time() < end
                        and self.run(
                            "squeue", "-h", "-t", "RUNNING,COMPLETING", "-o", "%A", check=False, timeout=15
                        ).stdout.strip()
                    ):
                        time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.get(name)
            if not pid:
                continue
            proc = self.procs.get(name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            end = time.time() + timeout
            while time.time() < end and _alive(pid, proc):
                time.sleep(0.1)
            if _alive(pid, proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if proc is not None:
                    proc.wait(timeout=10)
        for pid in self.job_processes():  # a step slurmd could not end: still this cluster's
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()
        self.procs.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / "pids.json")

    def job_processes(self) -> list[int]:
        """Live processes started by this cluster's daemons (slurmstepd, job scripts, their
        children): those whose environment holds this cluster's ``SLURM_CONF``."""
        needle = f"SLURM_CONF={self.conf}".encode()
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                environ = (d / "environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0") and _alive(int(d.name)):
                out.append(int(d.name))
        return out

    def alive(self) -> dict[str, bool]:
        """Daemon name -> whether its process still runs."""
        return {name: _alive(pid, self.procs.get(name)) for name, pid in self.pids.items()}

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _alive(pid: int, proc: subprocess.Popen | None = None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m oodml.testing.slurm",
        description="Start or stop a private single-node Slurm cluster in a folder.",
    )
    add_version(p)
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--dir", default=".slurm", help="the cluster's folder (default .slurm)")
    return p


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cluster = SlurmCluster(args.dir)
    if args.action == "up":
        if (cluster.dir / "pids.json").is_file():
            cluster.stop()  # a previous `up` whose daemons may still run
        cluster.start()
        print(
            f"Slurm is up ({', '.join(f'{k} {v}' for k, v in cluster.pids.items())}); in your shell:\n"
            f"export SLURM_CONF={cluster.conf}"
        )
        # the daemons were started in their own sessions: they outlive this command
        cluster.procs.clear()
    elif args.action == "down":
        cluster.stop()
        print(f"Slurm in {cluster.dir} is down")
    else:
        if not (cluster.dir / "pids.json").is_file():
            print(f"no cluster running in {cluster.dir}")
            return 1
        cluster.pids = {k: int(v) for k, v in json.loads((cluster.dir / "pids.json").read_text()).items()}
        print(cluster.run("sinfo", check=False).stdout.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
