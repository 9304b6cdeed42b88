"""``operators``: the people who answer tickets from their own mail client, and the
queues each one serves.  Add (or extend) one, list them."""

from __future__ import annotations

import json
import sys

import click

from mailgate.cli import text
from mailgate.cli.root import EX_DATAERR, Context, main, pass_ctx
from mailgate.config import is_address
from mailgate.tickets import operators


@main.group("operators")
def operators_group() -> None:
    """Operators who answer tickets from their mail client."""


@operators_group.command("add")
@click.argument("email")
@click.option("--name", default="", help="Shown to customers under the operator's replies.")
@click.option("--queue", "queues", multiple=True, required=True, help="A queue (repeatable).")
@pass_ctx
def operators_add(ctx: Context, email: str, name: str, queues: tuple[str, ...]) -> None:
    """Register an operator in one or more queues (or add queues to one)."""
    known = ctx.settings.queue_names
    listed = ", ".join(sorted(known))
    problems = [f"no queue {q!r} (queues: {listed})" for q in queues if q not in known]
    if not is_address(email):
        problems.append(f"{email!r} is not an e-mail address")
    if any(ch in name for ch in "\r\n"):
        problems.append("the name must not contain line breaks")
    if problems:
        click.echo("mailgate: nothing stored:\n  - " + "\n  - ".join(problems), err=True)
        sys.exit(EX_DATAERR)
    with ctx.session(write=True) as (rt, session):
        row = operators.add(session, email, name, queues, rt.clock())
        summary = f"{row.address} in {', '.join(row.queues)}"
    click.echo(f"operator {summary}")


@operators_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of operators).")
@pass_ctx
def operators_list(ctx: Context, as_json: bool) -> None:
    """Every operator with her name and the queues she serves."""
    with ctx.session() as (_, session):
        docs = [
            {"address": o.address, "name": o.name, "queues": list(o.queues)}
            for o in operators.listing(session)
        ]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        click.echo(
            f"{text.line(d['address']):<35} {text.line(d['name']):<25} {', '.join(d['queues'])}"
        )
    click.echo(f"({len(docs)} operators)")
