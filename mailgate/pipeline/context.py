"""What the pipeline reads from the runtime it is handed, as a protocol.

The pipeline applies verdicts through the tickets layer (so it needs what
``tickets.context.TicketContext`` names) and, before that, runs the facts stage and asks
the company's customer database: the analyzer, the DNS resolver, the external directory
and the parse limits.  It never imports the daemon that wires those parts; the daemon's
``Runtime`` record fits, and mypy checks that wherever one is passed.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter

from mailgate.parse import ParseLimits
from mailgate.pipeline.facts import Analyzer
from mailgate.tickets.context import TicketContext, TicketMetrics
from mailgate.verify.authn import DnsFunc
from mailgate.verify.external import ExternalDirectory


class PipelineMetrics(TicketMetrics, Protocol):
    @property
    def processed(self) -> Counter: ...


class PipelineContext(TicketContext, Protocol):
    """``TicketContext`` plus the facts stage's parts and the processed counter."""

    @property
    def metrics(self) -> PipelineMetrics: ...

    @property
    def analyzer(self) -> Analyzer: ...

    @property
    def dns(self) -> DnsFunc: ...

    @property
    def external(self) -> ExternalDirectory | None: ...

    @property
    def parse_limits(self) -> ParseLimits: ...
