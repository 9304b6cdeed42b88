"""Wiring reads the secrets the config names once, when the runtime is built, and hands
the values to the parts that use them; nothing reads the environment later."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config import Settings
from mailgate.daemon import wiring
from mailgate.errors import ConfigError
from mailgate.replies.sender import SmtpRelayTransport
from tests.conftest import make_settings

ENV = {"RELAY_PW": "relay-secret", "DESK_PW": "imap-secret"}


def secret_settings(tmp_path: Path) -> Settings:
    return make_settings(
        f"sqlite:///{tmp_path}/mailgate.db",
        tmp_path,
        environ=ENV,
        outbound={"relay": "127.0.0.1:2525", "username": "desk", "password_env": "RELAY_PW"},
        imap=[
            {
                "name": "desk",
                "host": "127.0.0.1",
                "tls": "none",
                "username": "desk",
                "password_env": "DESK_PW",
            }
        ],
    )


def test_secrets_are_read_at_wiring_time_and_kept(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    environ = dict(ENV)
    rt = wiring.build(settings, environ=environ)
    try:
        environ.clear()  # what the environment says afterwards no longer matters
        assert isinstance(rt.transport, SmtpRelayTransport)
        assert rt.transport.password == "relay-secret"
        assert dict(rt.imap_passwords) == {"desk": "imap-secret"}
        # A reload reads the relay password again, from the environment it is given.
        wiring.reload(rt, rt.settings, environ={"RELAY_PW": "rotated"})
        assert isinstance(rt.transport, SmtpRelayTransport)
        assert rt.transport.password == "rotated"
    finally:
        rt.close()


def test_an_unset_imap_password_stops_the_wiring(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    with pytest.raises(ConfigError, match="environment variable DESK_PW is not set"):
        wiring.build(settings, environ={"RELAY_PW": "relay-secret"})
