"""Inline OpenPGP clear-signed text unwrapped."""

from __future__ import annotations

from mailgate.parse.armor import unwrap_clearsigned

SIGNED = (
    "before\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nsigned\n- -- x\n"
    "-----BEGIN PGP SIGNATURE-----\n\nabc\n=q\n-----END PGP SIGNATURE-----\nafter"
)


def test_a_clearsigned_block_becomes_its_text() -> None:
    assert unwrap_clearsigned(SIGNED) == "before\nsigned\n-- x\nafter"


def test_an_incomplete_block_is_left_as_it_came() -> None:
    cut = SIGNED.split("-----END")[0]
    assert unwrap_clearsigned(cut) == cut
    assert unwrap_clearsigned("no armour here") == "no armour here"


def test_many_unterminated_blocks_stay_linear() -> None:
    text = "-----BEGIN PGP SIGNED MESSAGE-----\n" * 50_000
    assert unwrap_clearsigned(text) == text
