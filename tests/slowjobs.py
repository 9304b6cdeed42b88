"""A job function for the facts worker pool that gets stuck the way a parser can.

A message carrying ``STUCK`` keeps its worker busy where no signal reaches it, as a
library's native code does (nh3 once spent 13 s on 60 000 nested <div>s before
``mime.sanitize_html`` learned to refuse them); everything else is analysed as usual.
A module-level function, so the worker processes can import it.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime

from mailgate.pipeline.facts import Evidence, FactsConfig, Job, analyze_job
from mailgate.verify.authn import DnsFunc

STUCK = b"X-Test-Behaviour: stuck"


def stuck_in_native_code(
    job: Job, config: FactsConfig, dnsfunc: DnsFunc, now: datetime, budget: float
) -> Evidence:
    if STUCK in job.raw:
        # A blocked signal stays pending: the per-message alarm cannot end this.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(120)
    return analyze_job(job, config, dnsfunc, now, budget)
