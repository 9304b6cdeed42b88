"""The entry point tells ``serve`` (and its ``--config``) from every other command line:
that one starts without click (``mailgate.__main__``), the rest go to click."""

from __future__ import annotations

import pytest

from mailgate.__main__ import _serve_command


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve"], (True, None)),
        (["--config", "a.toml", "serve"], (True, "a.toml")),
        (["serve", "--config=b.toml"], (True, "b.toml")),
        (["--config", "a.toml", "serve", "--config", "b.toml"], (True, "b.toml")),
        (["serve", "--help"], (False, None)),
        (["serve", "--config"], (False, None)),
        (["drain"], (False, None)),
        (["tickets", "list", "--config", "a.toml"], (False, None)),
        ([], (False, None)),
    ],
)
def test_only_serve_and_its_config_skip_click(
    args: list[str], expected: tuple[bool, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILGATE_CONFIG", raising=False)
    assert _serve_command(args) == expected


def test_serve_reads_mailgate_config_unless_given_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_CONFIG", "/etc/mailgate/mailgate.toml")
    assert _serve_command(["serve"]) == (True, "/etc/mailgate/mailgate.toml")
    assert _serve_command(["serve", "--config", "x.toml"]) == (True, "x.toml")
