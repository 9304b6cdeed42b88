"""``mailgate check``: the pre-flight an admin runs after editing the config or before a
restart, and a unit's ``ExecStartPre``.

Each check is independent and reports what is wrong in words an admin can act on; one
failing check does not hide the others.  The configuration itself is checked by loading
it (``config.load`` lists every problem), so by the time these run it is well-formed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from mailgate.daemon.runtime import Runtime
from mailgate.errors import MailgateError
from mailgate.replies.render import LANGUAGES, PAGE_SAMPLE_CONTEXT, SAMPLE_CONTEXT
from mailgate.replies.sender import SmtpRelayTransport
from mailgate.store.migrate import schema_problem, sqlite_file


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    ok: bool
    detail: str


def run_checks(rt: Runtime) -> list[Finding]:
    findings = []
    for name, check in CHECKS:
        try:
            detail = check(rt)
            findings.append(Finding(name, True, detail))
        except Exception as exc:  # noqa: BLE001 -- every failure is a finding to print
            findings.append(Finding(name, False, str(exc).strip() or type(exc).__name__))
    return findings


def check_database(rt: Runtime) -> str:
    """Reachable and at this release's schema (a missing SQLite file is not created)."""
    path = sqlite_file(rt.engine)
    if path is None or path.is_file():
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    problem = schema_problem(rt.engine)
    if problem is not None:
        raise MailgateError(problem)
    url = rt.engine.url.render_as_string(hide_password=True)
    return f"{url}: reachable, schema current"


def check_templates(rt: Runtime) -> str:
    """Render every mail and page template in every language with sample values: a
    syntax error or an unknown variable fails here, not on a customer's mail."""
    root = rt.settings.template_dir
    if not (root / "ack").is_dir():
        raise MailgateError(f"{root}: no ack/ templates")
    missing = []
    for kind, context in SAMPLE_CONTEXT.items():
        for lang in LANGUAGES:
            if not (root / kind / lang).is_dir():
                missing.append(f"{kind}/{lang}")
                continue
            rt.renderer.render(
                kind,
                lang,
                from_address=next(iter(rt.settings.helpdesk.queues)),
                to="customer@example.com",
                in_reply_to=None,
                references=(),
                clock=rt.clock,
                number=1,
                tag=rt.renderer.subject_tag(1),
                **context,
            )
    for kind, context in PAGE_SAMPLE_CONTEXT.items():
        for lang in LANGUAGES:
            if (root / kind / lang).is_dir():
                rt.renderer.page(kind, lang, **context)
            else:
                missing.append(f"{kind}/{lang}")
    kinds = [*SAMPLE_CONTEXT, *PAGE_SAMPLE_CONTEXT]
    note = f" (missing {', '.join(missing)}: English is used)"
    return f"{root}: {', '.join(kinds)} render" + (note if missing else "")


def check_outbound(rt: Runtime) -> str:
    transport = rt.transport
    if isinstance(transport, SmtpRelayTransport):
        # Connect, TLS and login exactly as the outbox will, then QUIT without sending.
        with transport.connect():
            pass
        return f"relay {transport.host}:{transport.port} accepts us (tls={transport.tls})"
    directory = Path(rt.settings.outbound.maildir)
    for sub in ("tmp", "new", "cur"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory / "tmp"):
        pass
    return f"no relay: outgoing mail is written to the Maildir {os.path.abspath(directory)}"


CHECKS: tuple[tuple[str, Callable[[Runtime], str]], ...] = (
    ("database", check_database),
    ("templates", check_templates),
    ("outbound", check_outbound),
)


def report(findings: list[Finding]) -> Iterator[str]:
    for f in findings:
        yield f"{'ok  ' if f.ok else 'FAIL'} {f.name:10} {f.detail}"
