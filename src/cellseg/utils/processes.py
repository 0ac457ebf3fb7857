"""Which process writes a run, and whether it still exists: tells a live run from a killed one.

A SIGKILLed (or OOM-killed, or pre-empted) training process cannot mark its own ``metrics.json``; its
status stays ``running``. The writer records its host, pid and (on Linux) the process start time, so
any later reader on the same host can see that the writer is gone, even if the pid was reused since.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

Liveness = Literal["alive", "gone", "unknown"]


def _proc_stat(pid: int) -> list[str]:
    """Fields 3 onwards of ``/proc/<pid>/stat`` (state, ..., start time); empty where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name (field 2) is parenthesised and may hold spaces: split after its closing bracket.
    return stat[stat.rfind(")") + 2 :].split()


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22), or None off Linux."""
    fields = _proc_stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """Host, pid and start time of ``pid`` (default: this process), as stored in metrics.json."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "start_ticks": _start_ticks(pid)}


def liveness(identity: Mapping[str, Any] | None) -> Liveness:
    """Whether the process ``identity`` describes still runs; ``unknown`` for another host or no record."""
    if not isinstance(identity, Mapping) or identity.get("host") != socket.gethostname():
        return "unknown"
    pid = identity.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # exists, owned by another user
    fields = _proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):
        return "gone"  # killed, not yet reaped by its parent
    recorded = identity.get("start_ticks")
    if recorded is not None and _start_ticks(pid) not in (None, recorded):
        return "gone"  # the pid now belongs to a newer process
    return "alive"
