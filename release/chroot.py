"""Entering a Debian root: private mount (and PID) namespaces, then chroot.

One entry for both kinds of root: the clean systems of the systems check (a minimal /dev with
only the device nodes asked for, no host dirs) and the build roots (the host's /dev, the
project, build and cache dirs bind-mounted at their host paths, so no path is ever translated).
Every mount lives in the namespace and vanishes with it: nothing to clean up, nothing leaks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

HOST_DEVICES = "host"  # `devices` value: the host's whole /dev (build roots)

# Runs on the host as PID 1 of the new namespaces.
_ENTER = r"""
set -e
root=$1; devices=$2; shift 2
mount -t proc proc "$root/proc"
if [ "$devices" = host ]; then
    mount --rbind /dev "$root/dev"
else
    mount -t tmpfs -o mode=755 dev "$root/dev"
    for name in $devices; do
        touch "$root/dev/$name"
        mount --bind "/dev/$name" "$root/dev/$name"
    done
fi
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
while [ "$1" != "--" ]; do
    mkdir -p "$root$1"
    mount --bind "$1" "$root$1"
    shift
done
shift
chroot "$root" "$@"
"""


def enter(root: Path, command: Sequence[str], *, devices: Sequence[str] | str = HOST_DEVICES,
          binds: Sequence[Path] = (), pid: bool = False) -> list[str]:
    """The host argv that runs `command` chrooted in `root`.

    `devices`: HOST_DEVICES, or the names of the only /dev nodes to provide ("fuse" among them
    or not). `binds`: host dirs mounted at the same path inside. `pid`: a private PID namespace
    whose processes all die with the command (clean systems: nothing survives a check).
    """
    namespaces = ["--mount", "--pid", "--fork", "--kill-child"] if pid else ["--mount", "--fork"]
    device_arg = devices if isinstance(devices, str) else " ".join(devices)
    return ["unshare", *namespaces, "sh", "-c", _ENTER, "enter", str(root), device_arg,
            *map(str, binds), "--", *command]
