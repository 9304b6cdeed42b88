"""What our outgoing mail looks like on the wire: headers, encodings, threading,
header-injection refusal, DKIM signatures (verified with dkimpy against a fake DNS)
and VERP return paths."""

from __future__ import annotations

import base64
import dataclasses
import email
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailgate import config
from mailgate.errors import ConfigError, PermanentError
from mailgate.replies import render, verp
from mailgate.replies.render import SAMPLE_CONTEXT, Renderer
from mailgate.replies.signing import Signer
from tests.support import FakeClock

HELPDESK = "support@helpdesk.example"


def ack(renderer: Renderer, **overrides: object) -> EmailMessage:
    args: dict[str, object] = {
        "from_address": HELPDESK,
        "to": "jan@customer.example",
        "in_reply_to": "q1@customer.example",
        "references": ("root@customer.example",),
        "clock": FakeClock(),
        "number": 7,
        "tag": "[#7]",
        **SAMPLE_CONTEXT["ack"],
    }
    args.update(overrides)
    rendered = renderer.render("ack", "en", **args)  # type: ignore[arg-type]
    return email.message_from_bytes(rendered.raw, policy=policy.default)  # type: ignore[return-value]


def test_automatic_mail_carries_every_loop_guard() -> None:
    msg = ack(Renderer(config.Settings()))
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Precedence"] == "bulk"
    assert msg["X-Loop"] == HELPDESK
    assert msg["In-Reply-To"] == "<q1@customer.example>"
    assert msg["References"] == "<root@customer.example> <q1@customer.example>"
    assert msg["Message-ID"].endswith("@helpdesk.example>")


def test_non_ascii_names_and_subjects_are_rfc2047_encoded(tmp_path: Path) -> None:
    settings = config.build({"helpdesk": {"name": "Podpora Žilina — ČR"}}, environ={})
    rendered = Renderer(settings).render(
        "ack",
        "sk",
        from_address=HELPDESK,
        to="jan@customer.example",
        in_reply_to=None,
        references=(),
        clock=FakeClock(),
        number=7,
        tag="[#7]",
        **SAMPLE_CONTEXT["ack"],
    )
    head = rendered.raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # 7-bit headers: every relay can carry them
    assert b"=?utf-8?" in head
    msg = email.message_from_bytes(rendered.raw, policy=policy.default)
    assert msg["From"].addresses[0].display_name == "Podpora Žilina — ČR"
    assert msg["From"].addresses[0].addr_spec == HELPDESK
    assert msg["Subject"].startswith("[#7] ")
    assert not msg["Subject"].isascii()  # the Slovak template's words survived encoding
    assert "In-Reply-To" not in msg


def test_mixed_subjects_and_file_names_survive_the_wire_word_for_word() -> None:
    """ASCII words stay readable on the wire (the ticket tag above all), the others
    are encoded words, and decoding gives back exactly the text, spaces included —
    the stdlib's newer folder once lost the space in "Re: Zażółć"."""
    subject = "Re: Zażółć gęślą jaźń, " * 6 + "Ошибка DNS на vps-12"
    rendered = Renderer(config.Settings()).render(
        "reply",
        "pl",
        from_address=HELPDESK,
        to="jan@customer.example",
        in_reply_to=None,
        references=(),
        clock=FakeClock(),
        auto_submitted=None,
        quoted=render.Quoted(
            before="Dzień dobry, żółć.",
            subject=subject,
            attachments=(("raport łącza.pdf", "application/pdf", b"%PDF-1.4 x"),),
        ),
        number=7,
        tag="[#7]",
        operator_name="Anna Nowak",
    )
    head = rendered.raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert re.search(rb"^Subject: \S+ \[#7\] Re: =\?utf-8\?", head, re.MULTILINE)
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    msg = email.message_from_bytes(rendered.raw, policy=policy.default)
    assert msg["Subject"] == " ".join(rendered.subject.split())
    assert msg["Subject"].endswith(" [#7] " + " ".join(subject.split()))
    text, attachment = msg.iter_parts()  # type: ignore[attr-defined]
    assert text.get_content().startswith("Dzień dobry, żółć.")
    assert attachment.get_filename() == "raport łącza.pdf"
    assert attachment.get_content() == b"%PDF-1.4 x"
    assert b"\n" not in rendered.raw.replace(b"\r\n", b"")  # CRLF throughout


def test_long_reference_chains_keep_the_root_and_the_parent() -> None:
    chain = [f"m{i}@customer.example" for i in range(40)]
    msg = ack(Renderer(config.Settings()), references=tuple(chain[:-1]), in_reply_to=chain[-1])
    refs = re.findall(r"<([^>]+)>", msg["References"])
    assert len(refs) == render.MAX_REFERENCES
    assert refs[0] == "m0@customer.example"  # Thunderbird threads from the root
    assert refs[-1] == "m39@customer.example"  # Outlook and Gmail from the parent
    assert msg["In-Reply-To"] == "<m39@customer.example>"


def test_junk_message_ids_are_left_out_of_the_chain() -> None:
    msg = ack(Renderer(config.Settings()), references=("a b@x.example", "ok@x.example"))
    assert msg["References"] == "<ok@x.example> <q1@customer.example>"


@pytest.mark.parametrize(
    "change",
    [
        {"to": "jan@customer.example\r\nBcc: victim@elsewhere.example"},
        {"from_address": "support@helpdesk.example\nBcc: x@y.example"},
        {"in_reply_to": "q1@customer.example\r\nBcc: x@y.example"},
    ],
)
def test_line_breaks_in_header_values_are_refused(change: dict[str, str]) -> None:
    with pytest.raises(PermanentError) as info:
        ack(Renderer(config.Settings()), **change)
    assert info.value.reason == "header-injection"
    assert "line break" in str(info.value)


def test_helpdesk_name_with_crlf_is_refused_by_config_and_by_render() -> None:
    with pytest.raises(ConfigError, match=r"helpdesk\.name: must not contain line breaks"):
        config.build({"helpdesk": {"name": "Help\r\nBcc: victim@x.example"}}, environ={})
    # Even if a name slipped past the config (built in code), render refuses it.
    settings = config.Settings()
    bad = dataclasses.replace(
        settings,
        helpdesk=dataclasses.replace(settings.helpdesk, name="Help\r\nBcc: victim@x.example"),
    )
    with pytest.raises(PermanentError, match="header-injection: From"):
        ack(Renderer(bad))


def test_subject_template_producing_a_line_break_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ack" / "en"
    folder.mkdir(parents=True)
    (folder / "subject.txt.j2").write_text("{{ tag }} registered\nBcc: victim@x.example\n")
    (folder / "body.txt.j2").write_text("body\n")
    settings = config.build({"templates": {"directory": str(tmp_path)}}, environ={})
    with pytest.raises(PermanentError, match="Subject value"):
        ack(Renderer(settings))


# --------------------------------------------------------------------------- DKIM


def write_key(path: Path) -> bytes:
    """A fresh 2048-bit RSA key in PEM at ``path``; returns the DNS record's p= value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(public)


def fake_dns(records: dict[str, bytes]) -> object:
    """dkimpy's ``dnsfunc``: TXT lookups answered from a dict, never the network."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.decode().rstrip("."))

    return lookup


@pytest.fixture
def signing(tmp_path: Path) -> tuple[config.Settings, object]:
    public = write_key(tmp_path / "helpdesk.pem")
    settings = config.build(
        {
            "dkim": {
                "sign": [
                    {
                        "domain": "helpdesk.example",
                        "selector": "mg2026",
                        "key_file": str(tmp_path / "helpdesk.pem"),
                    }
                ]
            }
        },
        environ={},
    )
    dns = fake_dns({"mg2026._domainkey.helpdesk.example": b"v=DKIM1; k=rsa; p=" + public})
    return settings, dns


def test_our_signature_verifies_and_covers_the_threading_headers(
    signing: tuple[config.Settings, object],
) -> None:
    settings, dns = signing
    raw = (
        Renderer(settings)
        .render(
            "ack",
            "pl",
            from_address=HELPDESK,
            to="jan@customer.example",
            in_reply_to="q1@customer.example",
            references=(),
            clock=FakeClock(),
            number=7,
            tag="[#7]",
            **SAMPLE_CONTEXT["ack"],
        )
        .raw
    )
    signed = Signer(settings.dkim).sign(raw)
    assert signed.endswith(raw)  # only a header is prepended
    assert dkim.verify(signed, dnsfunc=dns)
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    tags = dict(
        (k.strip(), v.strip())
        for k, _, v in (
            t.partition("=")
            for t in re.sub(r"\s+", "", header.split("DKIM-Signature:", 1)[1]).split(";")
        )
        if k
    )
    assert tags["c"] == "relaxed/relaxed"
    assert tags["d"] == "helpdesk.example" and tags["s"] == "mg2026"
    signed_headers = tags["h"].split(":")
    for name in ("from", "to", "subject", "date", "message-id", "in-reply-to", "references"):
        assert name in signed_headers
    assert signed_headers.count("from") == 2  # a second From added en route breaks it
    # A changed subject (relays refolding whitespace is fine; words are not).
    tampered = signed.replace(b"Subject: [#7]", b"Subject: [#8]")
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=dns)
    refolded = signed.replace(b"Auto-Submitted: auto-replied", b"Auto-Submitted:   auto-replied")
    assert dkim.verify(refolded, dnsfunc=dns)


def test_mail_from_a_domain_without_a_key_goes_out_unsigned(
    signing: tuple[config.Settings, object],
) -> None:
    settings, _ = signing
    raw = b"From: Other <help@other.example>\r\nSubject: x\r\n\r\nbody\r\n"
    assert Signer(settings.dkim).sign(raw) == raw


def test_dkim_config_problems_are_listed_together(tmp_path: Path) -> None:
    (tmp_path / "ok.pem").write_text("not a key")
    tables = [
        {"domain": "helpdesk.example", "selector": "bad selector!", "key_file": "/nonexistent"},
        {"domain": "helpdesk.example", "selector": "s1", "key_file": str(tmp_path / "ok.pem")},
        {"domain": "", "selector": "s2", "key_file": "x", "algorithm": "ed25519"},
        "not a table",
    ]
    with pytest.raises(ConfigError) as info:
        config.build({"dkim": {"sign": tables}}, environ={})
    problems = "\n".join(info.value.problems)
    assert "dkim.sign[2]: unknown key 'algorithm'" in problems
    assert "dkim.sign[2].domain: required, a non-empty string" in problems
    assert "dkim.sign[3]: expected a table" in problems
    with pytest.raises(ConfigError) as info:
        config.build({"dkim": {"sign": tables[:2]}}, environ={})
    problems = "\n".join(info.value.problems)
    assert "dkim.sign[0].selector" in problems
    assert "dkim.sign[0].key_file: /nonexistent does not exist" in problems
    assert "dkim.sign[1].domain: helpdesk.example has more than one signing key" in problems
    with pytest.raises(ConfigError, match="list of tables cannot be set from the environment"):
        config.build({}, environ={"MAILGATE_DKIM__SIGN": "x"})
    # A file that is there but holds no key stops start-up, not each delivery.
    settings = config.build({"dkim": {"sign": [tables[1]]}}, environ={})
    with pytest.raises(ConfigError, match=r"dkim.sign\[0\].key_file"):
        Signer(settings.dkim)


# --------------------------------------------------------------------------- VERP


def test_verp_addresses_round_trip_and_resist_forgery() -> None:
    key = b"0123456789abcdef-secret"
    address = verp.address(42, "Helpdesk.Example", "bounces", key)
    assert re.fullmatch(r"bounces\+42\.[0-9a-f]{16}@helpdesk\.example", address)
    assert verp.parse(address, "bounces", key) == 42
    assert verp.parse(f"<{address.upper()}>", "bounces", key) == 42  # case-folding MTAs
    forged = address.replace("+42.", "+43.")
    assert verp.parse(forged, "bounces", key) is None
    assert verp.parse(address, "bounces", b"another key, same length") is None
    assert verp.parse(address, "returns", key) is None
    assert verp.parse(address, "bounces", None) is None
    assert verp.parse("support@helpdesk.example", "bounces", key) is None


def test_verp_key_must_come_from_the_environment() -> None:
    out = {"verp_secret_env": "MG_VERP"}
    with pytest.raises(ConfigError, match="MG_VERP is not set"):
        config.build({"outbound": out}, environ={})
    with pytest.raises(ConfigError, match="at least 16 characters"):
        config.build({"outbound": out}, environ={"MG_VERP": "short"})
    settings = config.build({"outbound": out}, environ={"MG_VERP": "x" * 32})
    assert settings.outbound.verp_secret_env == "MG_VERP"


def test_plain_smtp_only_to_a_loopback_relay() -> None:
    for relay in ("127.0.0.1:25", "[::1]:25", "localhost:2526"):
        config.build({"outbound": {"relay": relay, "tls": "insecure"}}, environ={})
    with pytest.raises(ConfigError, match="only for a loopback relay"):
        config.build({"outbound": {"relay": "smtp.example.net:25", "tls": "insecure"}}, environ={})
    with pytest.raises(ConfigError, match="must be starttls, implicit or insecure"):
        config.build({"outbound": {"tls": "none"}}, environ={})
    assert config.Settings().outbound.tls == "auto"


def test_the_default_relay_setting_is_plain_on_loopback_and_verified_elsewhere() -> None:
    from mailgate.replies.sender import SmtpRelayTransport

    default = config.Settings().outbound.tls
    for host in ("127.0.0.1", "::1", "localhost"):
        assert SmtpRelayTransport(host, 25, tls=default).tls == "insecure"
    assert SmtpRelayTransport("smtp.example.net", 25, tls=default).tls == "starttls"
    assert SmtpRelayTransport("192.0.2.25", 25, tls=default).tls == "starttls"
    # Said explicitly, starttls is verified STARTTLS even on loopback.
    assert SmtpRelayTransport("127.0.0.1", 25, tls="starttls").tls == "starttls"
