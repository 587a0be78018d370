"""The floors of every limit: below them a limit means nothing, or means "unlimited".

The engine reads a memory limit or CPU quota of 0 as *no limit*, refuses memory below 6 MiB, and
a timeout that ends before a process can start reports a run that never ran. So each limit a
request or an operator sets has a minimum as well as a maximum; the request models, the settings
and the policy all take theirs from here.
"""

from __future__ import annotations

MIN_MEMORY_BYTES = 6 * 1024 * 1024
"""The Docker engine's own minimum (6 MiB); anything lower it refuses, and 0 means unlimited."""
MIN_CPUS = 0.01
"""One hundredth of a CPU: a CFS quota of 1 ms per 100 ms period, the kernel's smallest."""
MIN_TIMEOUT_SECONDS = 0.1
"""A run's timeout; shorter ones would report runs that never got to start."""
MIN_SCRATCH_BYTES = 1024 * 1024
"""A run's disk (`scratch`): 1 MiB. The content a run is sent counts in it, and it is also the
largest file the run may write (RLIMIT_FSIZE), so less would mean a run that cannot start."""
