"""Settings: defaults, the documented example, environment overrides, error listing."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from mailgate import config
from mailgate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_example_documents_every_key_with_its_default() -> None:
    text = (ROOT / "config" / "mailgate.example.toml").read_text()
    example = tomllib.loads(text)
    defaults = config.Settings()
    for section, cls in config.section_types().items():
        assert section in example, f"[{section}] missing from the example"
        keys = {f.name for f in dataclasses.fields(cls)}
        assert set(example[section]) == keys, f"[{section}] keys differ"
        for key in keys:
            default = getattr(getattr(defaults, section), key)
            if isinstance(default, tuple):  # a list of tables, empty by default
                default = list(default)
            assert example[section][key] == default, (
                f"{section}.{key}: example shows a value other than the default"
            )
    assert set(example) == set(config.section_types())  # [[imap]] is a commented sample
    # The commented-out [[dkim.sign]] entry shows every key of a signing table and is
    # itself a valid configuration once uncommented.
    block = text[text.index("# [[dkim.sign]]") :].split("\n\n")[0]
    uncommented = tomllib.loads("\n".join(line[2:] for line in block.splitlines()))
    [entry] = uncommented["dkim"]["sign"]
    assert set(entry) == {f.name for f in dataclasses.fields(config.DkimKey)}


# Keys of an array-of-tables sample ([[imap]], [[kb]], [[webhooks]]) that have no
# useful default: the example shows one.
SAMPLE_KEYS = {"name", "host", "username", "password_env", "url", "secret_env", "title", "match"}


def test_example_documents_every_imap_key_and_is_valid() -> None:
    text = (ROOT / "config" / "mailgate.example.toml").read_text()
    parsed = tomllib.loads(text)
    assert "imap" not in parsed and "webhooks" not in parsed  # samples, commented out
    # Uncomment the samples: their table headers and key lines, not the explanations.
    sample = text[text.index("# [[imap]]") :]
    code = re.compile(r"^# (\[\[(?:imap|kb|webhooks)\]\]|[a-z_]+ = .*)$")
    example = tomllib.loads(
        "\n".join(m.group(1) for line in sample.splitlines() if (m := code.match(line)))
    )
    for section, cls in config.LISTS.items():
        [table] = example[section]
        assert set(table) == {f.name for f in dataclasses.fields(cls)}, f"[[{section}]] keys"
        default = cls()
        for key, value in table.items():
            if key in SAMPLE_KEYS:
                continue
            shown = tuple(value) if isinstance(value, list) else value
            assert shown == getattr(default, key), f"{section}.{key}: not the default"
    settings = config.build(
        example,
        environ={"MAILGATE_IMAP_PASSWORD": "secret", "MAILGATE_WEBHOOK_SECRET": "s" * 16},
    )
    [account] = settings.imap
    assert account.folders == ("INBOX",)
    assert account.effective_port == 993
    [article] = config.build({"kb": example["kb"]}).kb
    assert article.url.startswith("https://") and article.match
    [hook] = settings.webhooks
    assert hook.events == config.WEBHOOK_EVENTS


IMAP_TABLES = """
[[imap]]
name = "support"
host = "imap.example.net"
tls = "none"
username = "u"
password_env = "NOT_SET_ANYWHERE"
folders = ["INBOX", "INBOX"]
after = "move:INBOX"
{extra}

[[imap]]
name = "support"
host = "127.0.0.1"
tls = "none"
username = "u"
password_file = "{secret}"
after = "archive"
batch_size = 0
folders = {folders}

[[imap]]
name = "bad:name"
password_env = "A"
password_file = "{secret}"
"""


def test_imap_tables_list_every_problem(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    path = tmp_path / "imap.toml"
    path.write_text(IMAP_TABLES.format(extra='colour = "blue"', secret=secret, folders='"INBOX"'))
    problems = "\n".join(problems_of(path, {"A": "1", "MAILGATE_IMAP__HOST": "x"}))
    for fragment in (
        "[imap[0]] unknown key 'colour'",
        "imap[1].folders: expected a list of strings",
        "MAILGATE_IMAP__HOST: [[imap]] tables are set in the file only",
    ):
        assert fragment in problems, fragment
    # With the values well-typed, the checks across keys report the rest together.
    path.write_text(IMAP_TABLES.format(extra="", secret=secret, folders='["INBOX"]'))
    found = problems_of(path, {"A": "1"})
    problems = "\n".join(found)
    for fragment in (
        "imap[0] (support): tls: none is allowed only for a loopback host",
        "imap[0] (support): password_env: environment variable NOT_SET_ANYWHERE is not set",
        "imap[0] (support): folders: a folder is listed twice",
        "imap[0] (support): after: the move target must not be one of the polled folders",
        "imap[0] (support): name is used by more than one [[imap]] table",
        "imap[1] (support): after: must be seen, delete or move:FOLDER",
        "imap[1] (support): batch_size: must be positive",
        "imap[2] (bad:name): name: 1-64 characters",
        "imap[2] (bad:name): host: required",
        "imap[2] (bad:name): exactly one of password_env and password_file is needed",
    ):
        assert fragment in problems, fragment
    # The above, imap[1]'s duplicate name and imap[2]'s missing username.
    assert len(found) == 12


def test_imap_must_be_an_array_of_tables() -> None:
    with pytest.raises(ConfigError, match=r"\[\[imap\]\] must be an array of tables"):
        config.build({"imap": {"name": "x"}}, environ={})


def test_dev_config_declares_the_three_helpdesk_addresses() -> None:
    settings = config.load(ROOT / "config" / "dev.toml", environ={})
    assert dict(settings.helpdesk.queues) == {
        "support@helpdesk.example": "technical",
        "billing@helpdesk.example": "billing",
        "abuse@helpdesk.example": "abuse",
    }
    assert settings.smtp.listen == "127.0.0.1:2525"
    assert settings.database.url.startswith("sqlite:///")
    assert settings.outbound.relay == ""


def test_environment_overrides_are_typed() -> None:
    settings = config.build(
        {"smtp": {"listen": "127.0.0.1:2525"}},
        environ={
            "MAILGATE_DATABASE__URL": "postgresql+psycopg://u@db/mailgate",
            "MAILGATE_SMTP__LISTEN": "0.0.0.0:25",
            "MAILGATE_LMTP__LISTEN": "127.0.0.1:24",
            "MAILGATE_HTTP__LISTEN": "127.0.0.1:9000",
            "MAILGATE_OUTBOUND__RELAY": "127.0.0.1:2526",
            "MAILGATE_OUTBOUND__MAILDIR": "/srv/sent",
            "MAILGATE_SMTP__MAX_MESSAGE_SIZE": "1000",
            "MAILGATE_HELPDESK__QUEUES": "help@x.example=tech, pay@x.example=billing",
            "MAILGATE_VERIFY__TRUSTED_AUTHSERV_IDS": "mx1.helpdesk.example, mx2.helpdesk.example",
            "MAILGATE_HTTP__PUBLIC_URL": "https://help.example.com/",
            "MAILGATE_CONFIG": "/etc/mailgate.toml",  # names the file; not a section
            "UNRELATED": "1",
        },
    )
    assert settings.database.url == "postgresql+psycopg://u@db/mailgate"
    assert settings.smtp.listen == "0.0.0.0:25"
    assert settings.lmtp.listen == "127.0.0.1:24"
    assert settings.http.listen == "127.0.0.1:9000"
    assert settings.outbound.relay == "127.0.0.1:2526"
    assert settings.outbound.maildir == "/srv/sent"
    assert settings.smtp.max_message_size == 1000
    assert dict(settings.helpdesk.queues) == {"help@x.example": "tech", "pay@x.example": "billing"}
    assert settings.verify.trusted_authserv_ids == ("mx1.helpdesk.example", "mx2.helpdesk.example")
    assert settings.public_url == "https://help.example.com"


def problems_of(path: Path, environ: dict[str, str]) -> list[str]:
    """Every problem ``load`` reports for the file at ``path``."""
    with pytest.raises(ConfigError) as info:
        config.load(path, environ=environ)
    return info.value.problems


def test_bad_config_lists_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[smtp]
listen = "nowhere"
max_message_size = "big"
colour = "blue"

[outbound]
tls = "maybe"

[helpdesk]
subject_tag = "[ticket]"

[nonsense]
x = 1
"""
    )
    problems = "\n".join(problems_of(path, {"MAILGATE_PROCESSING__MAX_ATTEMPTS": "many"}))
    for fragment in (
        "unknown section [nonsense]",
        "[smtp] unknown key 'colour'",
        "smtp.max_message_size: expected int",
        "processing.max_attempts: 'many' is not an integer",
    ):
        assert fragment in problems
    # Cross-field checks run once the values themselves are well-typed.
    path.write_text(
        '[smtp]\nlisten = "nowhere"\n[outbound]\ntls = "maybe"\n'
        '[helpdesk]\nsubject_tag = "[ticket]"\n'
    )
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={})
    assert len(info.value.problems) == 3
    assert "smtp.listen" in str(info.value)
    assert "outbound.tls" in str(info.value)
    assert "helpdesk.subject_tag" in str(info.value)


def test_missing_and_invalid_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[smtp\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(broken, environ={})


def test_queue_for_accepts_plus_addressing_and_case() -> None:
    settings = config.Settings()
    assert settings.queue_for("Support@HelpDesk.Example") == "technical"
    assert settings.queue_for("billing+t123.abc@helpdesk.example") == "billing"
    assert settings.queue_for("someone@helpdesk.example") is None


def test_password_env_must_exist() -> None:
    with pytest.raises(ConfigError, match="RELAY_PW"):
        config.build({"outbound": {"password_env": "RELAY_PW"}}, environ={})
    settings = config.build(
        {"outbound": {"password_env": "RELAY_PW"}}, environ={"RELAY_PW": "secret"}
    )
    assert settings.outbound.password_env == "RELAY_PW"


def test_type_errors_and_rules_between_keys_come_in_one_error() -> None:
    data = {
        "smtp": {"listen": 2525, "hostnme": "mx.example"},
        "outbound": {"tls": "maybe"},
        "helpdsk": {},
        "helpdesk": {"default_language": "de"},
    }
    with pytest.raises(ConfigError) as caught:
        config.build(data, environ={})
    assert sorted(caught.value.problems) == sorted(
        [
            "smtp.listen: expected str, got 2525",
            "[smtp] unknown key 'hostnme' (did you mean 'hostname'?)",
            "unknown section [helpdsk] (did you mean 'helpdesk'?)",
            "outbound.tls: must be starttls, implicit or insecure (or auto)",
            "helpdesk.default_language: 'de' is not one of ('en', 'pl', 'sk', 'cs', 'ru')",
        ]
    )
