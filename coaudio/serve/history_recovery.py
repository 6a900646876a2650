"""Sessions whose server died: a server that opens the history closes them, and only them.

A SIGKILLed (or crashed, or powered-off) server never writes ``ended`` for its open sessions.
Every session row therefore names the process that writes it (``sessions.writer``, see
:func:`writer_identity`), and a server that opens the file closes the open sessions of every
writer that is certainly gone: ``ended`` becomes the time of its newest hop (or its start when
it has none) and ``ended_by`` becomes ``'crash'``.

Why a process identity and not a lock: SQLite's own locks are POSIX locks, which a process
loses on *every* descriptor of the file when it closes *any* of them, so a lock of ours on the
database would be a way to corrupt it; a lock on a file next to it would leave files behind
that a user has to clean. A pid alone is not enough (pids are reused), so the identity is the
boot (``/proc/sys/kernel/random/boot_id``), the pid namespace, the pid and the process's start
time in clock ticks since boot (``/proc/PID/stat``): the same four values mean the same process,
and a pid reused by a later process has another start time.

A writer counts as gone when it booted another time (a reboot, or the file was copied from
another machine: WAL files cannot be shared between machines), or when it is of this boot and
pid namespace and no process with its pid and start time exists. When it cannot be told (another
pid namespace, such as a server in another container writing the same file, or a system without
``/proc``, where only "is a process with this pid alive" can be asked), the session is left
open: a wrongly open session is a cosmetic defect, a wrongly closed one of a live server is not.
Sessions of a version-1 file name no writer: a server that upgrades a file closes them, since
the only process that could still write them is an older coaudio's. If a live session was ever
closed anyway, its server's own end sets ``ended`` and clears ``ended_by`` again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
from functools import cache

log = logging.getLogger(__name__)


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat; the name
    in field 2 may hold spaces and parentheses, so count from the last ')')."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@cache
def writer_identity() -> str:
    """This process, as JSON: boot id, pid namespace, pid and start time where the system says
    them (Linux), else the host name and pid."""
    pid = os.getpid()
    boot = _read("/proc/sys/kernel/random/boot_id")
    if boot is not None:
        identity = {"boot": boot, "pidns": _pid_namespace(), "pid": pid, "start": _start_ticks(pid)}
    else:
        identity = {"host": socket.gethostname(), "pid": pid}
    return json.dumps(identity, sort_keys=True)


def writer_gone(writer: str | None) -> bool:
    """Whether the process ``writer`` (a :func:`writer_identity`) certainly writes no more;
    False whenever that cannot be told. None: a version-1 session, see the module docstring."""
    if writer is None:
        return True
    if writer == writer_identity():
        return False  # this process: another History object of ours may hold the session
    try:
        other, me = json.loads(writer), json.loads(writer_identity())
        pid = int(other["pid"])
    except (ValueError, KeyError, TypeError):
        return False  # not ours to judge
    if "boot" in other and "boot" in me:
        if other["boot"] != me["boot"]:
            return True
        if other.get("pidns") != me.get("pidns") or other.get("start") is None:
            return False
        return _start_ticks(pid) != other["start"]
    if other.get("host") != me.get("host"):
        return "host" in other and "host" in me  # another machine's writer cannot share this WAL
    return not _pid_exists(pid)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


def close_orphans(conn: sqlite3.Connection) -> int:
    """Mark the open sessions of every writer that is gone as ended (one transaction); returns
    how many. ``conn`` is a writer's connection in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        writers = [w for (w,) in conn.execute("SELECT DISTINCT writer FROM sessions WHERE ended IS NULL")]
        closed = 0
        for writer in filter(writer_gone, writers):
            closed += conn.execute(
                "UPDATE sessions SET ended = max(started, coalesce(last_time, started)), ended_by = 'crash' "
                "WHERE ended IS NULL AND writer IS ?",
                (writer,),
            ).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if closed:
        log.warning(
            "closed %d stream session%s that a server left open when it stopped without ending %s "
            "(marked ended_by=crash)",
            closed,
            "" if closed == 1 else "s",
            "it" if closed == 1 else "them",
        )
    return closed
