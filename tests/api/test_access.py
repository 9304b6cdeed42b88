"""The API's door: tokens, and every error as an RFC 9457 problem document."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate import config
from mailgate.daemon.api.problems import Tokens
from mailgate.errors import ConfigError
from tests.api.client import CUSTOMER, OTHER, SECRET, running_api

PROBLEM = "application/problem+json"


def test_without_tokens_there_is_no_api(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path, environ={}) as api:
        for path in ("/tickets", "/openapi.json", "/tickets/1"):
            assert api.call("GET", path).status == 404
        assert api.call("POST", "/tickets", {"x": 1}).status in (404, 405)


def test_tokens_and_problem_documents(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path, api={"max_body": 4096}) as api:
        # 401: none, a wrong one, another scheme; the problem says what is needed.
        for token, scheme in ((None, ""), ("wrong-secret-0123456789", "Bearer"), (SECRET, "Basic")):
            headers = {"Authorization": f"{scheme} {token}"} if scheme else {}
            reply = api.call("GET", "/tickets", token=None, headers=headers)
            assert reply.status == 401
            assert reply.headers["Content-Type"].startswith(PROBLEM)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
            assert reply.json["status"] == 401 and reply.json["title"] == "Unauthorized"
        # Both configured tokens open the door.
        assert api.call("GET", "/tickets").status == 200
        assert api.call("GET", "/tickets", token=OTHER).status == 200
        # The document is public (it holds no data).
        assert api.call("GET", "/openapi.json", token=None).json["openapi"] == "3.1.0"
        # 404: an unknown ticket, an unknown path, a number too large to exist.
        for path in ("/tickets/999", "/nothing-here", f"/tickets/{2**70}"):
            reply = api.call("GET", path)
            assert reply.status == 404, path
            assert reply.headers["Content-Type"].startswith(PROBLEM)
        # 405 for a method the path does not have, still a problem document.
        reply = api.call("DELETE", "/tickets/1")
        assert reply.status == 405 and reply.headers["Content-Type"].startswith(PROBLEM)
        # 400: not JSON at all.
        reply = api.call("POST", "/tickets", raw=b"{not json")
        assert reply.status == 400 and reply.json["status"] == 400
        assert reply.headers["Content-Type"].startswith(PROBLEM)
        # 422 lists every problem: unknown, missing, of the wrong type, not allowed.
        reply = api.call(
            "POST",
            "/tickets",
            {"account": 5, "from": CUSTOMER, "priority": "urgent", "colour": "red"},
        )
        assert reply.status == 422
        fields = {e["field"]: e["message"] for e in reply.json["errors"]}
        assert fields == {
            "colour": "unknown field",
            "account": "must be a string",
            "subject": "required",
            "body": "required",
            "priority": "must be one of high, normal",
        }
        assert api.call("POST", "/tickets", [1, 2]).status == 422
        reply = api.call("GET", "/tickets?status=nope&limit=0&sort=asc&cursor=zzz")
        assert reply.status == 422
        assert {e["field"] for e in reply.json["errors"]} == {"status", "limit", "sort", "cursor"}
        # 413: over api.max_body, whether announced by Content-Length or not.
        reply = api.call("POST", "/tickets", {"body": "x" * 5000})
        assert reply.status == 413 and reply.headers["Content-Type"].startswith(PROBLEM)


def test_token_list_is_checked_at_start_up() -> None:
    good = "panel:" + "s" * 16
    parsed, problems = config.parse_tokens(f"{good}, ci:{'t' * 20}")
    assert parsed == {"s" * 16: "panel", "t" * 20: "ci"} and problems == []
    for bad, said in (
        ("panel:short", "at least 16"),
        ("no-colon-here-at-all", "name:secret"),
        (f"{good},{good}", "used twice"),
    ):
        with pytest.raises(ConfigError) as err:
            config.build({"api": {"tokens_env": "T"}}, environ={"T": bad})
        assert said in str(err.value)
    with pytest.raises(ConfigError, match="is not set"):
        config.build({"api": {"tokens_env": "UNSET_HERE"}}, environ={})
    # A secret never appears in the problem text.
    with pytest.raises(ConfigError) as err:
        config.build({"api": {"tokens_env": "T"}}, environ={"T": "panel:tooshort"})
    assert "tooshort" not in str(err.value)


def test_token_names_come_from_the_secret_only() -> None:
    tokens = Tokens({SECRET: "panel", OTHER: "ci"})
    assert tokens.name_of(f"Bearer {SECRET}") == "panel"
    assert tokens.name_of(f"bearer  {OTHER}") == "ci"
    assert tokens.name_of(f"Bearer {SECRET[:-1]}") is None
    assert tokens.name_of("Bearer ") is None and tokens.name_of(None) is None
    assert not Tokens({})
