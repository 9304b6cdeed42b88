"""Everything that writes ticket data once a verdict is known.

The verdicts policy can reach (``verdicts``) and their application to tickets
(``apply``), threading look-ups (``correlate``), operators and their e-mail commands,
bounce records, challenge bookkeeping, and the timed jobs over tickets (``sla``,
``retention``).  Called by the pipeline inside its transaction and by the daemon's
scheduler; it never parses raw mail (``parse`` did) and never talks to the network
(``replies.outbox`` sends, later, outside any transaction).
"""
