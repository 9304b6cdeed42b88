"""A real Dovecot IMAP server for the tests, private to one test session.

Dovecot runs in the foreground as our child process, with its own configuration, run
directory and Maildir root under a temporary directory, listening on two free loopback
ports: plain IMAP (which also offers STARTTLS) and implicit TLS.  Its certificate is
self-signed for 127.0.0.1, made with the openssl command dovecot-core depends on; a
test trusts it by pointing SSL_CERT_FILE at ``cert``.  Any user name logs in with the
password ``secret`` (a static passdb) and gets an empty Maildir of its own, so each
test takes a fresh user instead of cleaning up.

Dovecot refuses to run mail processes as root, so the mail root belongs to uid 5000
(no passwd entry is needed) and the directory above it is world-traversable — which is
why this does not live under pytest's private (0700) tmp directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from imapclient import IMAPClient

from tests.support import free_port

MAIL_UID = 5000
PASSWORD = "secret"

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = mailgate-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {root}/dovecot.log
mail_location = maildir:~/Maildir
mail_fsync = never
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/mail/%Ln
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""


def binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )


class Dovecot:
    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        self.port = free_port()
        self.tls_port = free_port()
        self.cert = self.root / "cert.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.chmod(0o755)
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        os.chown(self.root / "mail", MAIL_UID, MAIL_UID)
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-keyout", str(self.root / "key.pem"), "-out", str(self.cert)),
                *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        conf = self.root / "dovecot.conf"
        conf.write_text(
            _CONFIG.format(
                root=self.root,
                port=self.port,
                tls_port=self.tls_port,
                uid=MAIL_UID,
                password=PASSWORD,
            )
        )
        self.proc = subprocess.Popen(
            [self.executable, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"dovecot did not start: {err}{self.log()}") from None
                time.sleep(0.02)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def new_user(self) -> str:
        return f"u{uuid.uuid4().hex[:12]}"

    def client(self, user: str) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(user, PASSWORD)
        return client

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user.lower() / "Maildir"

    def append(
        self, user: str, folder: str, messages: list[bytes], flags: tuple[bytes, ...] = ()
    ) -> None:
        """Put messages into ``folder`` (created if missing), in order, by MULTIAPPEND."""
        with contextlib.closing(_Session(self.client(user))) as s:
            if not s.client.folder_exists(folder):
                s.client.create_folder(folder)
            # Chunks keep one command's literals to a few MB; UIDs follow the list order.
            for start in range(0, len(messages), 200):
                chunk = messages[start : start + 200]
                s.client.multiappend(
                    folder, [{"msg": raw, "flags": flags} if flags else raw for raw in chunk]
                )

    def folder_state(self, user: str, folder: str) -> dict[str, set[bytes]]:
        """Message-ID (without brackets) → flags of what ``folder`` holds now."""
        with contextlib.closing(_Session(self.client(user))) as s:
            if not s.client.folder_exists(folder):
                return {}
            s.client.select_folder(folder, readonly=True)
            uids = s.client.search("ALL")
            data = s.client.fetch(uids, [b"FLAGS", b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        state = {}
        for item in data.values():
            header = item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode()
            mid = header.partition(":")[2].strip().strip("<>")
            state[mid] = set(item[b"FLAGS"])
        return state


class _Session:
    def __init__(self, client: IMAPClient) -> None:
        self.client = client

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.logout()
