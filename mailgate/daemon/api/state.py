"""What every API handler shares: the runtime, the limits, and how to wake the outbox.

Kept on the API's aiohttp application under ``STATE``; handlers are plain functions of
the request and find it there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from mailgate.daemon.api.problems import CALLER, Problem
from mailgate.daemon.runtime import Runtime
from mailgate.errors import MailgateError

T = TypeVar("T")


@dataclass(frozen=True)
class ApiState:
    rt: Runtime
    max_body: int
    on_change: Callable[[], None]  # called on the loop after a write queued mail

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Database work off the loop; "the database is not there" becomes 503."""
        try:
            return await asyncio.to_thread(work, *args)
        except MailgateError as exc:
            raise Problem(503, f"try again later: {exc}", headers={"Retry-After": "5"}) from exc


STATE = web.AppKey("mailgate_api_state", ApiState)


def state(request: web.Request) -> ApiState:
    return request.config_dict[STATE]


def token_name(request: web.Request) -> str:
    """The name of the token that authenticated this request."""
    return CALLER.get()
