"""A private Exim for the end-to-end suite, configured with the recipe of docs/exim.md.

Debian's exim4 and postfix packages conflict, so CI does not install Exim: it unpacks
exim4-daemon-light into ``EXIM_ROOT`` (``.ci/install-mail-servers.sh``) and this module
starts that binary with a configuration file of its own (``-C``).  The file is the
recipe's three snippets — domain list, router, transport — copied from the document as
they are written there (only the LMTP port is this session's), around the least a test
instance needs: private spool and logs, loopback ports, no DNS, and a "customers" router
that delivers every other domain to the session's Dovecot over LMTP.

Two loopback addresses keep the relay rules honest: the customer's client (swaks) talks
from 127.0.0.2, which may send only to the recipe's ``relay_to_domains``; mailgate relays
its acknowledgements from 127.0.0.1, the one host allowed to relay anywhere.

The daemon runs as root and drops to the binary's compiled-in Exim user (Debian-exim)
as a real one does; it has no queue runner, so deferred mail waits for ``flush``
(``exim -qff``, which the recipe tells admins to run).  It is stopped by the process id
in its pid file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.infra import REPO, alive, run, start_daemon, wait_for, wait_port
from tests.support import free_port

EXIM_ROOT = Path(os.environ.get("MAILGATE_EXIM_ROOT", "/opt/mailgate-ci/exim"))
DOC = REPO / "docs" / "exim.md"
RECIPE_PORT = "port = 2424"  # the LMTP port the recipe shows; the test's is free
CUSTOMER_HOST = "127.0.0.2"  # where the customers' mail comes from (not a relay client)


def exim_binary() -> Path | None:
    """The unpacked exim4 of the CI script, else an installed one."""
    unpacked = EXIM_ROOT / "usr" / "sbin" / "exim4"
    if os.access(unpacked, os.X_OK):
        return unpacked
    installed = shutil.which("exim4")
    return Path(installed) if installed else None


def recipe(section: str) -> str:
    """The first code block under ``## {section}`` in docs/exim.md, as written."""
    text = DOC.read_text()
    found = re.search(rf"^## {re.escape(section)}\n.*?^```\n(.*?)^```$", text, re.M | re.S)
    assert found, f"docs/exim.md has no code block under '## {section}'"
    return found.group(1)


# Everything the recipe leaves to the admin's existing configuration, for a private
# instance: its own files, loopback only, no DNS or ident lookups, no TLS (mailgate
# relays in plain text over loopback, as docs/exim.md's mailgate side says).
MAIN = """\
exim_path = {binary}
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
pid_file_path = {root}/exim.pid
primary_hostname = exim.e2e.test
qualify_domain = e2e.test
daemon_smtp_ports = {smtp_port}
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
keep_environment =
hostlist relay_from_hosts = 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt
log_selector = +outgoing_port
"""

# The relay part of Exim's default RCPT ACL: the recipe's relay_to_domains from
# anywhere (its router verifies the address), anything from mailgate's host.
ACL = """\
begin acl
acl_check_rcpt:
  accept domains = +relay_to_domains
         verify = recipient
  accept hosts = +relay_from_hosts
  deny message = relay not permitted
"""

CUSTOMERS_ROUTER = """\
customers:
  driver = manualroute
  domains = ! +helpdesk_domains
  transport = customers_lmtp
  route_list = * 127.0.0.1 byname
  self = send
"""

CUSTOMERS_TRANSPORT = """\
customers_lmtp:
  driver = smtp
  protocol = lmtp
  port = {dovecot_lmtp}
  hosts_override
  hosts = 127.0.0.1
  allow_localhost
"""

RETRY = """\
begin retry
*  *  F,2h,15m; G,16h,1h,1.5; F,4d,6h
"""


@dataclass
class Exim:
    root: Path
    binary: Path
    dovecot_lmtp: int
    mailgate_lmtp: int
    smtp_port: int = field(default_factory=free_port)

    @property
    def conf(self) -> Path:
        return self.root / "exim.conf"

    @property
    def mainlog(self) -> Path:
        return self.root / "log" / "mainlog"

    @property
    def pidfile(self) -> Path:
        return self.root / "exim.pid"

    def config_text(self) -> str:
        transport = recipe("Transport")
        assert RECIPE_PORT in transport, "docs/exim.md's transport changed shape"
        transport = transport.replace(RECIPE_PORT, f"port = {self.mailgate_lmtp}")
        main = MAIN.format(binary=self.binary, root=self.root, smtp_port=self.smtp_port)
        return "\n".join(
            [
                main + recipe("Domain list"),
                ACL,
                "begin routers",
                recipe("Router"),
                CUSTOMERS_ROUTER,
                "begin transports",
                transport,
                CUSTOMERS_TRANSPORT.format(dovecot_lmtp=self.dovecot_lmtp),
                RETRY,
            ]
        )

    def exim(self, *args: str) -> str:
        return run(str(self.binary), "-C", str(self.conf), *args)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config_text())
        # Exim refuses a configuration file that anyone but root may write.
        self.conf.chmod(0o644)
        user = re.sub(r"^exim_user = ", "", self.exim("-bP", "exim_user").strip())
        for sub in ("spool", "log"):
            (self.root / sub).mkdir(exist_ok=True)
            shutil.chown(self.root / sub, user, user)
        # Routing the two kinds of address checks the whole file before the daemon starts.
        routes = self.exim("-bt", "support@helpdesk.example", "alice@customer.example")
        assert "router = mailgate, transport = mailgate_lmtp" in routes, routes
        assert "router = customers, transport = customers_lmtp" in routes, routes
        start_daemon(self.root / "start.log", str(self.binary), "-C", str(self.conf), "-bd")
        wait_port(self.smtp_port)

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(self.pidfile.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), timeout=15, what="Exim's daemon to stop")

    def flush(self) -> None:
        """Deliver everything in the queue now, deferred or not (``exim -qff``)."""
        self.exim("-qff")

    def queue(self) -> str:
        return self.exim("-bp")

    def log_lines(self, needle: str) -> list[str]:
        if not self.mainlog.exists():
            return []
        return [line for line in self.mainlog.read_text().splitlines() if needle in line]

    def panics(self) -> list[str]:
        """The panic log, less the note every re-exec with ``-C`` writes there (a real
        installation reads its default configuration file and never sees it)."""
        log = self.root / "log" / "paniclog"
        lines = log.read_text().splitlines() if log.exists() else []
        return [x for x in lines if "exim user lost privilege for using -C option" not in x]

    def swaks(self, *args: str) -> str:
        """Submit as a customer would: from 127.0.0.2, to the daemon's port."""
        return run(
            "swaks", "--silent", "2", "--server", "127.0.0.1", "--port", str(self.smtp_port),
            "--local-interface", CUSTOMER_HOST, "--helo", "client.customer.example",
            "--timeout", "20", *args,
        )  # fmt: skip
