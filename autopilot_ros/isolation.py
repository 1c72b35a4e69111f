"""Keep DDS traffic of tests and demos on loopback and on a domain of their own.

Two test runs on one machine must never hear each other, so each process claims a free
ROS_DOMAIN_ID with an exclusive lock file, held until the process exits.
"""

import fcntl
import os
import tempfile

_held = []  # open lock files: the claim lasts as long as the process


def isolate_dds(first: int = 20, last: int = 99) -> int:
    """Set loopback-only discovery and claim a domain ID nobody else here holds."""
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # Jazzy and newer
    os.environ['ROS_LOCALHOST_ONLY'] = '1'  # Humble and older; Kilted's rcl ignores it
    os.environ.pop('ROS_STATIC_PEERS', None)
    start = first + os.getpid() % (last - first + 1)
    for i in range(last - first + 1):
        domain = first + (start - first + i) % (last - first + 1)
        path = os.path.join(tempfile.gettempdir(), f'autopilot_ros-domain-{domain}.lock')
        handle = open(path, 'w')  # noqa: SIM115 - kept open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held.append(handle)
        os.environ['ROS_DOMAIN_ID'] = str(domain)
        return domain
    raise RuntimeError(f'no free ROS_DOMAIN_ID in [{first}, {last}]')
