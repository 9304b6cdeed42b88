"""A real rspamd for the tests, private to one test session.

Debian's ``rspamd`` package (installed by ``.ci/install-mail-servers.sh``; its system
service is never started) runs in the foreground as our child process with a top-level
configuration of our own: only the normal (scanning) worker, on a free loopback port,
with its database, run and log directories under a temporary directory.  The stock
module configuration is read from /etc/rspamd; our ``local.d`` replaces the host's:

- ``enable_test_patterns``: rspamd's GTUBE variants give fixed verdicts — the classic
  ``XJS…`` string ``reject``, ``YJS…`` ``add header``, ``ZJS…`` ``rewrite subject``
  (rspamd 3.4 needs this option for all but the first; 3.8 calls it gtube_patterns).
- action thresholds far up, so an honest test mail scored without DNS (this machine
  has none; LIBRARIES.md saw 7.3 points of HFILTER/DMARC_NA) gets ``no action``;
- a resolver that answers nothing at once (loopback port 1) with a short timeout, so
  DNS-based modules give up quickly instead of stalling each scan;
- no hyperscan: compiling its databases made start-up take minutes.

No redis is configured; the modules that need it switch themselves off.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support import free_port

GTUBE_REJECT = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_ADD_HEADER = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_REWRITE_SUBJECT = "ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

_TOP = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "warning";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"""
_OPTIONS = """\
enable_test_patterns = true;
disable_hyperscan = true;
dns {{
  nameserver = ["{nameserver}"];
  timeout = 0.2s;
  retransmits = 1;
}}
"""
_ACTIONS = """\
greylist = 400;
add_header = 500;
rewrite_subject = 600;
reject = 1000;
"""


def binary() -> str | None:
    return shutil.which("rspamd")


class Rspamd:
    def __init__(self, executable: str, nameserver: str = "127.0.0.1:1") -> None:
        self.executable = executable
        self.nameserver = nameserver  # host:port; the default answers nothing
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-rspamd-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        for sub in ("local.d", "db", "run", "log"):
            (self.root / sub).mkdir()
        (self.root / "rspamd.conf").write_text(_TOP.format(port=self.port))
        (self.root / "local.d" / "options.inc").write_text(
            _OPTIONS.format(nameserver=self.nameserver)
        )
        (self.root / "local.d" / "actions.conf").write_text(_ACTIONS)
        variables = {
            "CONFDIR": "/etc/rspamd",
            "LOCAL_CONFDIR": str(self.root),
            "DBDIR": str(self.root / "db"),
            "RUNDIR": str(self.root / "run"),
            "LOGDIR": str(self.root / "log"),
        }
        command = [self.executable, "-f", "-u", "root", "-g", "root", "--insecure"]
        command += ["-c", str(self.root / "rspamd.conf")]
        command += [f"{k}={v}" for k, v in variables.items()]
        with (self.root / "stdout.log").open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rspamd exited at start-up: {self.log()}")
            if self.ping():
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"rspamd did not answer within {timeout} s: {self.log()}")

    def ping(self) -> bool:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response,
        ):
            return bool(response.read().strip() == b"pong")
        return False

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "log/rspamd.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)
