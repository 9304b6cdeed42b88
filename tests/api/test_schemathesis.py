"""Property-based tests of the panel API from its own OpenAPI document (schemathesis),
against a real ``mailgate serve`` process: whatever the generated requests hold, the
answers keep to the document (statuses, content types, schemas) and nothing is a 5xx."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.process import Mailgate

SECRET = "schemathesis-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailgate]:
    mailgate = Mailgate(tmp_path_factory.mktemp("schemathesis"))
    mailgate.write_config('[api]\ntokens_env = "MAILGATE_API_TOKENS"\n')
    before = os.environ.get("MAILGATE_API_TOKENS")
    os.environ["MAILGATE_API_TOKENS"] = f"schemathesis:{SECRET}"
    try:
        mailgate.start()
        for args in (
            ("accounts", "add", "jkowalski", "--admin", "jan@customer.example"),
            ("operators", "add", "ola@helpdesk.example", "--queue", "support"),
        ):
            done = mailgate.cli(*args)
            assert done.returncode == 0, done.stderr
        # One ticket with articles, so reads of /tickets/1 find something.
        body = {
            "account": "jkowalski",
            "from": "jan@customer.example",
            "subject": "Hello",
            "body": "A request.",
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{mailgate.http_port}/api/v1/tickets",
            data=json.dumps(body).encode(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 201
        yield mailgate
    finally:
        mailgate.stop()
        if before is None:
            os.environ.pop("MAILGATE_API_TOKENS", None)
        else:
            os.environ["MAILGATE_API_TOKENS"] = before


EXAMPLES = int(os.environ.get("MAILGATE_SCHEMATHESIS_EXAMPLES", "40"))


def test_api_keeps_to_its_document(served: Mailgate) -> None:
    base = f"http://127.0.0.1:{served.http_port}"
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    # schemathesis's own pytest plugin (from_fixture) does not run under pytest 9;
    # each operation's strategy is driven by Hypothesis here instead.
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {o.label for o in operations} >= {
        "GET /api/v1/tickets/{number}",
        "PATCH /api/v1/tickets/{number}",
    }, [o.label for o in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=base,
                headers=AUTH,
                # A schema-valid request may still name an account, operator, queue or
                # cursor that does not exist: 422 by design, which this check calls a
                # failure.  Every other default check runs.
                excluded_checks=[positive_data_acceptance],
            )

        check()
