"""The running process: the runtime record (``runtime``) and its building (``wiring``),
listeners and jobs (``app``), the web endpoints (``webapp``), metrics, logs, leader
election and ``mailgate check``.

The top of the import graph below the CLI: it may import every other package; none of
them imports it (outside ``TYPE_CHECKING``).
"""
