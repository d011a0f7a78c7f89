"""Daemon processes that outlive the command that started them, and are found again by pid file.

Each process runs in its own session (start_new_session), so it survives the CLI or the pytest
run that started it, and its process group id is its pid: stopping it signals the whole group.
The pid file records the process start time (/proc/<pid>/stat field 22) and the component's
fingerprint, so a recycled pid is never mistaken for ours and a changed command line is
restarted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .components import Component


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: int
    fingerprint: str
    argv0: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a live pid, None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def read_record(pidfile: Path) -> PidRecord | None:
    try:
        return PidRecord(**json.loads(pidfile.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def is_alive(rec: PidRecord) -> bool:
    st = _stat(rec.pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == rec.start_ticks


def running(pidfile: Path) -> PidRecord | None:
    """The record of the process the pid file names, if that very process still runs."""
    rec = read_record(pidfile)
    return rec if rec is not None and is_alive(rec) else None


_children: list[subprocess.Popen[bytes]] = []  # keeps Popen objects (and their reaping) alive


def start(comp: Component, *, pidfile: Path, logfile: Path, cwd: Path) -> PidRecord:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **comp.env}
    with logfile.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {comp.name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            comp.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _children.append(proc)
    st = _stat(proc.pid)
    rec = PidRecord(proc.pid, st[1] if st else 0, comp.fingerprint, comp.argv[0])
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(rec.to_json())
    tmp.replace(pidfile)
    return rec


def _reap() -> None:
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def stop(pidfile: Path, *, timeout_s: float = 15.0) -> bool:
    """SIGTERM the process group of the recorded process, SIGKILL it after `timeout_s`.
    Returns whether something was running. Removes the pid file."""
    rec = running(pidfile)
    if rec is None:
        pidfile.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap()
        if not is_alive(rec) and not _group_alive(rec.pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rec.pid, signal.SIGKILL)
        for _ in range(50):
            _reap()
            if not is_alive(rec) and not _group_alive(rec.pid):
                break
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left (our own children not reaped yet) count as gone.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def exit_status(rec: PidRecord) -> int | None:
    """Exit code of a child of this process that has ended (None if unknown or running)."""
    for p in _children:
        if p.pid == rec.pid:
            return p.poll()
    return None
