"""Webhooks: telling the panel about every change, at least once, in order per ticket.

``record`` writes an event row per configured URL in the transaction of the change it
reports (a session hook: whatever door the change came through — mail, the API, a
scheduled job — it is seen); ``deliver`` sends them afterwards, outside any
transaction, signed, with a timeout, retrying with backoff until a 2xx or the URL's
lifetime.  Only the daemon installs and runs them.
"""
