"""Child processes that end with their parent, however it ends (a SIGKILL included), so none is orphaned.

Torch-free and dependency-free: the backend's worker, the Slack bot and the local workspace's launcher all
use it for the processes they start.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Run in a child (before exec, or first thing): Linux sends it `signum` when its parent dies. SIGKILL for
    work that may simply stop (training); SIGTERM for a process that should close what it holds first."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
