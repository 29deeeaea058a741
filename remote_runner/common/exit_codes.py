"""The runner's exit codes (docs/runner.md lists them; the systemd unit relies on them).

Each outcome has its own code, so an operator or a unit file can tell a finished batch from one that
must be resumed, and a wrong setting from a machine problem.
"""

DONE = 0  #: every run finished and every run succeeded
BUILD_FAILED = 1  #: an image did not build (``build``, or ``run`` building missing images)
BAD_INPUT = 2  #: settings, catalog or selection wrong: the runner said what to fix; nothing started
DONE_WITH_FAILURES = 3  #: every run finished, some failed (attempts used up for reasons of their own)
BATCH_BUSY = 4  #: another live runner holds the batch's lock; nothing was touched
ENGINE_UNAVAILABLE = 5  #: the Docker engine went away and did not come back in time; resumable
DISK_FULL = 6  #: the results disk (or Docker's) is full or below ``min_free_disk``; resumable once freed
PREFLIGHT_FAILED = 7  #: the preflight found broken APIs before any real run (no plan written); fix, run anew
NO_WORKERS = 8  #: cluster mode: no worker joined within ``worker_wait_seconds``; the group was released
WORKERS_NOT_RELEASED = 9  #: cluster mode: the batch is over but the worker group does not read 0; head stays
CAP_REACHED = 10  #: cluster mode: max_cost_usd admits no more run; the group was released; raise it, resume
STOPPED = 143  #: SIGTERM/SIGINT: running experiments were interrupted cleanly; resumable
