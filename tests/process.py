"""``mailgate serve`` as a real process, configured and driven the way an admin's
service manager would: a TOML file, ``db upgrade``, then signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port

HELPDESK_DOMAIN = "helpdesk.example"
QUEUES = ("support", "billing", "abuse")


@dataclass
class Mailgate:
    """``mailgate serve`` as its own process, the way systemd would run it."""

    root: Path
    relay_port: int = 0  # 0: no relay, outgoing mail goes to the Maildir root/sent
    lmtp_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    # Where the database and the outgoing Maildir live (default: root); the config
    # and the log stay in root.
    data: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def store(self) -> Path:
        return self.data or self.root

    @property
    def config(self) -> Path:
        return self.root / "mailgate.toml"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.store}/mailgate.db"

    @property
    def log(self) -> Path:
        return self.root / "mailgate.log"

    def write_config(self, extra: str = "", queues: tuple[str, ...] = QUEUES) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.relay_port:
            # Postfix on loopback without a certificate: plain SMTP is allowed only there.
            outbound = f'relay = "127.0.0.1:{self.relay_port}"\ntls = "insecure"'
        else:
            outbound = f'maildir = "{self.store}/sent"'
        boxes = "".join(f'"{box}@{HELPDESK_DOMAIN}" = "{box}"\n' for box in queues)
        self.config.write_text(
            f"""\
[database]
url = "{self.db_url}"
[smtp]
listen = "127.0.0.1:{self.smtp_port}"
hostname = "mailgate.helpdesk.example"
[lmtp]
listen = "127.0.0.1:{self.lmtp_port}"
hostname = "mailgate.helpdesk.example"
[http]
listen = "127.0.0.1:{self.http_port}"
[outbound]
{outbound}
timeout = 10
[processing]
sweep_seconds = 2
[verify]
# A subprocess cannot take the tests' fake resolver: no DNS at all.
dns_lookups = false
[log]
format = "json"
{extra}
[helpdesk.queues]
{boxes}"""
        )

    def cli(
        self, *args: str, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mailgate", "--config", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )

    def start(self) -> None:
        if not self.config.exists():
            self.write_config()
        upgraded = self.cli("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        self.serve()
        self.wait_ready()

    def serve(self) -> None:
        """Start ``mailgate serve`` on the database as it is (a restart), not waiting."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailgate", "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )

    def wait_greeting(self, timeout: float = 20) -> None:
        """Until the SMTP listener sends the first byte of its greeting."""

        def greets() -> bool:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=2) as conn:
                return bool(conn.recv(1))

        self._wait(greets, "no greeting", timeout, every=0.005)

    def wait_ready(self, timeout: float = 20) -> None:
        url = f"http://127.0.0.1:{self.http_port}/readyz"

        def ready() -> bool:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(reply.status == 200)

        self._wait(ready, "mailgate not ready", timeout, every=0.1)

    def _wait(self, probe: Callable[[], bool], what: str, timeout: float, every: float) -> None:
        """Until ``probe`` says yes (an OSError is a no), while the process lives."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                if probe():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {self.log.read_text()[-2000:]}")
            time.sleep(every)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=5
            ) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
