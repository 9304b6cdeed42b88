"""The socket file of the LMTP Unix socket listener (``[lmtp] socket``).

The listener itself is the TCP LMTP listener's protocol and handler (``ingest.smtp``);
what is particular to a Unix socket is its file, and that is this module: it is made
before the daemon serves and removed when it stops.

A daemon killed with SIGKILL leaves its socket file behind, and binding the path again
fails with EADDRINUSE.  The file is removed only when nobody answers on it (connection
refused): a second daemon started by mistake must not steal the socket of the first,
which would leave the first one running deaf.  A path that is not a socket at all is
never removed.  asyncio's own ``create_unix_server(path=…)`` removes any socket file
it finds, alive or not, so the socket is bound here and handed over with ``sock=``.

The permissions (``[lmtp] socket_mode``) are set before ``listen``, so no client can
connect while the file still has the umask's mode.  On shutdown the file is removed
only if it is still the one we made — the same inode and change time, since a freed
inode number is soon given again: a newer daemon may have replaced it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

# How long the probe of an existing socket file waits for someone to accept.
PROBE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class SocketFile:
    """A socket file this process made: its path and what proves it ours."""

    path: str
    identity: tuple[int, int, int]  # device, inode, change time (ns)

    def remove(self) -> None:
        """Remove the file unless another process has put its own socket there since."""
        with contextlib.suppress(FileNotFoundError):
            if _identity(self.path) == self.identity:
                os.unlink(self.path)


def _identity(path: str) -> tuple[int, int, int]:
    found = os.lstat(path)
    return found.st_dev, found.st_ino, found.st_ctime_ns


def bind(path: str, mode: int) -> tuple[socket.socket, SocketFile]:
    """A bound, not yet listening Unix stream socket at ``path`` with ``mode``.

    Raises ``OSError``: EADDRINUSE when a live process listens there, EEXIST when the
    path is something other than a socket, or whatever ``bind`` says (no permission…).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            _remove_if_stale(path)
            sock.bind(path)
        os.chmod(path, mode)
        identity = _identity(path)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock, SocketFile(path, identity)


def _remove_if_stale(path: str) -> None:
    """Remove ``path`` if it is a socket nobody listens on; raise ``OSError`` otherwise."""
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # left by a daemon that died: nobody is behind it
        return
    except TimeoutError:
        pass  # alive, its backlog is full: it is someone's
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process listens on {path}")
