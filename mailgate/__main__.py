"""The ``mailgate`` command's entry point (the console script and ``python -m mailgate``).

It imports the command-line interface only when it runs, not when it is imported.
That matters for the facts workers: multiprocessing starts each worker by re-importing
the parent's main script (the console script, which imports this module), so an entry
point that imported ``mailgate.cli`` at the top would load the whole daemon — SQLAlchemy,
Alembic, aiosmtpd, the web app, about 50 MB — into every worker that only needs the
facts stage.

``mailgate serve`` (with ``--config`` before or after it, or none) skips click and the
command tree altogether: ``daemon.boot`` opens the listeners before the rest of the
daemon is imported, and importing every command first would cost a restarted daemon
about a second before its first greeting.

The MTA's pipe command (``mailgate ingest --from S --to R``) is tried first: its hot
path, ``ingest.deliver``, imports only the standard library and hands the message to
the running daemon.  Only when no daemon takes it does the full command load, to
store the message itself — from the bytes the hot path has read already, if any.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    serve, config = _serve_command(sys.argv[1:])
    if serve:
        from mailgate.daemon import boot

        sys.exit(boot.main(config))
    if "ingest" in sys.argv[1:]:  # other commands do not pay for the check
        _pipe_first()
    from mailgate.cli import main as cli

    cli()


def _serve_command(args: list[str]) -> tuple[bool, str | None]:
    """Whether ``args`` are ``serve`` and ``--config FILE`` options only, and the config
    file they name (the last one given, else MAILGATE_CONFIG, as click reads them)."""
    config: str | None = None
    words: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--config":
            config = next(rest, None)
            if config is None:
                return False, None  # click says what is missing
        elif arg.startswith("--config="):
            config = arg.partition("=")[2]
        else:
            words.append(arg)
    if words != ["serve"]:
        return False, None
    return True, config if config is not None else os.environ.get("MAILGATE_CONFIG") or None


def _pipe_first() -> None:
    """Deliver through the daemon and exit, unless the full command must do the work."""
    from mailgate.ingest import deliver

    outcome = deliver.main(sys.argv[1:])
    if isinstance(outcome, int):
        sys.exit(outcome)
    if outcome is not None and (stdin := outcome.as_stdin()) is not None:
        sys.stdin = stdin  # the message, read already, for the direct path


if __name__ == "__main__":
    main()
