"""Real mail servers for the end-to-end suite: a private Postfix instance, a private
Dovecot and ``mailgate serve`` itself, all on free loopback ports under one directory.

Postfix is the admin's MTA: it takes mail from the test (swaks) on its smtpd port, hands
the helpdesk domain to mailgate over LMTP exactly as ``docs/postfix/`` tells admins to,
and relays mailgate's acknowledgements onwards.  "Onwards" is Dovecot, standing in for
the customers' mail provider: every domain that is not the helpdesk's is delivered to its
LMTP port, and the test reads the customer's INBOX back over IMAP.

Everything runs as root (Postfix's master and Dovecot drop privileges themselves), with
its configuration, queue and logs under ``root``; nothing touches /etc/postfix, port 25
or DNS.  Both servers are stopped through their own control commands, never by name.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.process import HELPDESK_DOMAIN, Mailgate
from tests.support import free_port

__all__ = ["HELPDESK_DOMAIN", "Dovecot", "Mailgate", "Postfix"]

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "docs" / "postfix"

CUSTOMERS = ("alice@customer.example", "bob@customer.example", "carol@customer.example")
PASSWORD = "e2e-secret"  # a throw-away Dovecot login that exists only under the tmp dir
RECIPE_LMTP = "[127.0.0.1]:2424"  # the LMTP address the recipe shows; the test's is free


def run(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def start_daemon(log: Path, *argv: str) -> None:
    """Run a command that forks a daemon.  Its output goes to a file: the daemon keeps
    the descriptors it inherited, so a pipe would never reach end-of-file."""
    with open(log, "ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=out, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): see {log}")


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (PID 1 here reaps late) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_gone(pidfile: Path, timeout: float = 15) -> None:
    if not pidfile.exists():
        return
    with contextlib.suppress(ValueError, FileNotFoundError):
        pid = int(pidfile.read_text().split()[0])
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass
class Dovecot:
    root: Path
    imap_port: int = field(default_factory=free_port)
    lmtp_port: int = field(default_factory=free_port)

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def start(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        users = self.root / "users"
        users.write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}\n" for u in CUSTOMERS))
        shutil.chown(users, group="dovecot")
        users.chmod(0o640)
        os.chown(self.root / "mail", 5000, 5000)  # mail runs under a numeric uid, not root
        self.conf.write_text(
            f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = mailgate-e2e-{self.imap_port}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {self.root}/dovecot.log
mail_location = maildir:~/Maildir
mail_fsync = never
first_valid_uid = 5000
last_valid_uid = 5000
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {users}
}}
userdb {{
  driver = static
  args = uid=5000 gid=5000 home={self.root}/mail/%Ld/%Ln
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@customer.example
}}
"""
        )
        start_daemon(self.root / "start.log", "dovecot", "-c", str(self.conf))
        wait_port(self.imap_port)
        wait_port(self.lmtp_port)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            run("dovecot", "-c", str(self.conf), "stop")
        wait_gone(self.root / "run" / "master.pid")

    def find(self, user: str, header: str, value: str, timeout: float = 30) -> bytes:
        """The first message in ``user``'s INBOX whose ``header`` contains ``value``."""
        deadline = time.monotonic() + timeout
        while True:
            with imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10) as imap:
                imap.login(user, PASSWORD)
                imap.select("INBOX", readonly=True)
                _, data = imap.search(None, "HEADER", header, f'"{value}"')
                ids = data[0].split()
                if ids:
                    _, parts = imap.fetch(ids[0], "(BODY.PEEK[])")
                    first = parts[0]
                    assert isinstance(first, tuple)
                    return bytes(first[1])
            if time.monotonic() > deadline:
                raise AssertionError(f"no message with {header}: {value} for {user}")
            time.sleep(0.2)


# Debian's service list with chroot off (the queue is private) and smtpd on loopback.
MASTER_BASE = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# What a test instance needs that a real one would not: private directories, loopback
# only, no DNS, file logging (no syslog here), and the customers' world = Dovecot.
MAIN_BASE = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
meta_directory = /etc/postfix
myhostname = mta.e2e.test
mydomain = e2e.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
default_transport = lmtp:inet:[127.0.0.1]:{dovecot_lmtp}
local_transport = error:local delivery is off in the e2e instance
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no
append_dot_mydomain = no
biff = no
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
# Deferred mail waits for an explicit `postfix flush`, so a test decides when it retries.
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
"""

# After the recipe: the test client connects from loopback, which the default
# exclusion ($mynetworks) would exempt from the bare-newline rule under test.
MAIN_AFTER_RECIPE = """\
smtpd_forbid_bare_newline_exclusions =
"""


def recipe(name: str, etc: Path, lmtp_port: int) -> str:
    """One of the documented snippet files, pointed at this instance's paths and port."""
    text = (RECIPE / name).read_text()
    expected = {"main.cf": "/etc/postfix/", "mailgate-transport": RECIPE_LMTP}
    assert expected.get(name, "") in text, f"docs/postfix/{name} changed shape"
    return text.replace("/etc/postfix/", f"{etc}/").replace(RECIPE_LMTP, f"[127.0.0.1]:{lmtp_port}")


@dataclass
class Postfix:
    root: Path
    dovecot_lmtp: int
    mailgate_lmtp: int
    smtp_port: int = field(default_factory=free_port)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    def start(self) -> None:
        for sub in ("etc", "spool", "data"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix", "postfix")
        main = MAIN_BASE.format(root=self.root, dovecot_lmtp=self.dovecot_lmtp)
        main += recipe("main.cf", self.etc, self.mailgate_lmtp) + MAIN_AFTER_RECIPE
        (self.etc / "main.cf").write_text(main)
        master = MASTER_BASE.format(smtp_port=self.smtp_port)
        master += recipe("master.cf", self.etc, self.mailgate_lmtp)
        (self.etc / "master.cf").write_text(master)
        transport = recipe("mailgate-transport", self.etc, self.mailgate_lmtp)
        (self.etc / "mailgate-transport").write_text(transport)
        run("postfix", "-c", str(self.etc), "check")
        start_daemon(self.root / "start.log", "postfix", "-c", str(self.etc), "start")
        wait_port(self.smtp_port)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            run("postfix", "-c", str(self.etc), "stop")
        wait_gone(self.root / "spool" / "pid" / "master.pid")

    def flush(self) -> None:
        run("postfix", "-c", str(self.etc), "flush")

    def queue(self) -> str:
        return run("postqueue", "-c", str(self.etc), "-p")

    def log_lines(self, needle: str) -> list[str]:
        if not self.maillog.exists():
            return []
        return [line for line in self.maillog.read_text().splitlines() if needle in line]

    def swaks(self, *args: str) -> str:
        """Submit with swaks to this instance; ``--server`` always, so no MX lookup."""
        return run(
            "swaks", "--silent", "2", "--server", "127.0.0.1", "--port", str(self.smtp_port),
            "--helo", "client.customer.example", "--timeout", "20", *args,
        )  # fmt: skip


def wait_for(predicate: Callable[[], object], timeout: float = 30, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
