"""Stored inbound mail → tickets: claim a batch, gather the facts, decide, apply.

``batches`` claims leased batches and drives them; ``facts`` runs in worker processes
(parse, classify, authenticate, identify) and therefore imports neither the database
nor this package's other modules; ``gather`` looks up, once, all a decision needs;
``policy`` is the pure decision (``tickets.apply`` carries it out); ``priority`` the
pure urgency assessment.  This ``__init__`` stays empty so that a facts worker importing
``mailgate.pipeline.facts`` loads nothing else.
"""
