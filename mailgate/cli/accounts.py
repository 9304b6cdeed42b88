"""``accounts``: mailgate's own account directory — which addresses may make official
requests for which customer account, and the identifiers (domains, contracts, IPs …)
that tie a request to it.  Add one, import many from CSV or JSON, list, show.

The rules live in ``verify.directory``; this module reads options and files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from mailgate.cli import text
from mailgate.cli.root import EX_DATAERR, Context, main, pass_ctx
from mailgate.store.models import Account
from mailgate.verify import directory


@main.group()
def accounts() -> None:
    """The account directory: who may make official requests for which account."""


def _address_role(value: str) -> tuple[str, str]:
    address, _, role = value.rpartition(":")
    return (address, role) if address else (value, "technical")


@accounts.command("add")
@click.argument("login")
@click.option("--admin", required=True, help="The account's administrative address.")
@click.option(
    "--address", "addresses", multiple=True, help="EMAIL:ROLE (admin, technical, billing, abuse)."
)
@click.option("--domain", "domains", multiple=True)
@click.option("--contract", "contracts", multiple=True)
@click.option("--order", "orders", multiple=True)
@click.option("--ip", "ips", multiple=True)
@click.option("--service", "services", multiple=True)
@click.option("--lang", "language", default=None, help="en, pl, sk, cs or ru.")
@click.option("--name", default="", help="Display name of the customer.")
@pass_ctx
def accounts_add(
    ctx: Context,
    login: str,
    admin: str,
    addresses: tuple[str, ...],
    domains: tuple[str, ...],
    contracts: tuple[str, ...],
    orders: tuple[str, ...],
    ips: tuple[str, ...],
    services: tuple[str, ...],
    language: str | None,
    name: str,
) -> None:
    """Add an account (or add addresses and identifiers to an existing one)."""
    spec = directory.AccountSpec(
        login=login,
        admin=admin,
        name=name,
        language=language,
        addresses=tuple(_address_role(a) for a in addresses),
        identifiers=tuple(
            (kind, value)
            for kind, values in (
                ("domain", domains),
                ("contract", contracts),
                ("order", orders),
                ("ip", ips),
                ("service", services),
            )
            for value in values
        ),
    )
    _store_accounts(ctx, [spec])


@accounts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def accounts_import(ctx: Context, file: str) -> None:
    """Import accounts from CSV (a header row) or JSON (a list of objects).

    Fields: login, admin, name, lang, addresses ("a@x:billing b@y:technical"),
    domains, contracts, orders, ips, services (lists, or space/comma-separated).
    """
    try:
        specs = directory.read_specs(Path(file))
    except ValueError as exc:
        click.echo(f"mailgate: {exc}", err=True)
        sys.exit(EX_DATAERR)
    _store_accounts(ctx, specs)


def _store_accounts(ctx: Context, specs: list[directory.AccountSpec]) -> None:
    problems = [f"{s.login or '?'}: {p}" for s in specs for p in s.problems()]
    if problems:
        click.echo("mailgate: nothing stored:\n  - " + "\n  - ".join(problems), err=True)
        sys.exit(EX_DATAERR)
    with ctx.session(write=True) as (rt, session):
        for spec in specs:
            directory.upsert(session, spec, rt.clock())
    click.echo(f"{len(specs)} account(s) stored")


def account_json(a: Account) -> dict[str, Any]:
    return {
        "login": a.login,
        "name": a.name,
        "language": a.language,
        "addresses": [{"address": x.address, "role": x.role} for x in a.addresses],
        "identifiers": [{"kind": i.kind, "value": i.value} for i in a.identifiers],
    }


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of accounts).")
@pass_ctx
def accounts_list(ctx: Context, as_json: bool) -> None:
    """Every account with its admin addresses and how many identifiers it has."""
    with ctx.session() as (_, session):
        docs = [account_json(a) for a in session.scalars(select(Account).order_by(Account.login))]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        admins = ", ".join(x["address"] for x in d["addresses"] if x["role"] == "admin")
        click.echo(
            f"{text.line(d['login']):<20} {text.line(admins):<35} "
            f"{len(d['identifiers'])} identifiers"
        )
    click.echo(f"({len(docs)} accounts)")


@accounts.command("show")
@click.argument("login")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the account).")
@pass_ctx
def accounts_show(ctx: Context, login: str, as_json: bool) -> None:
    """One account: its addresses with their roles, and its identifiers."""
    with ctx.session() as (_, session):
        account = session.scalar(select(Account).where(Account.login == login.lower()))
        if account is None:
            click.echo(f"no account {login}", err=True)
            sys.exit(1)
        doc = account_json(account)
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    click.echo(f"{text.line(doc['login'])} {text.line(doc['name'])}".rstrip())
    click.echo(f"  language: {doc['language'] or '-'}")
    for x in doc["addresses"]:
        click.echo(f"  {x['role']:<10} {text.line(x['address'])}")
    for i in doc["identifiers"]:
        click.echo(f"  {i['kind']:<10} {text.line(i['value'])}")
