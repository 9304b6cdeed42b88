"""The ``mailgate`` command's entry point (the console script and ``python -m mailgate``).

It imports the command-line interface only when it runs, not when it is imported.
That matters for the facts workers: multiprocessing starts each worker by re-importing
the parent's main script (the console script, which imports this module), so an entry
point that imported ``mailgate.cli`` at the top would load the whole daemon — SQLAlchemy,
Alembic, aiosmtpd, the web app, about 50 MB — into every worker that only needs the
facts stage.
"""

from __future__ import annotations


def main() -> None:
    from mailgate.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
