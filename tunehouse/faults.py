"""Named points where the crash tests stop a process, so they can SIGKILL everything at that exact moment.

With `TUNEHOUSE_FAULT_HOLD=<name>` and `TUNEHOUSE_FAULT_FILE=<path>` in its environment, the first process
to reach `hold_point("<name>")` writes its pid to the file and then waits forever for the test's SIGKILL.
Without them (always, outside the tests) a hold point is one dictionary lookup. The points sit between the
steps whose ordering makes tunehouse crash-safe: see docs/reliability.md.
"""

from __future__ import annotations

import os
import time


def hold_point(name: str) -> None:
    if os.environ.get("TUNEHOUSE_FAULT_HOLD") != name:
        return
    marker = os.environ["TUNEHOUSE_FAULT_FILE"]
    with open(marker + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    while True:
        time.sleep(3600)
