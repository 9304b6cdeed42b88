"""charsets and detect: labels, 7-bit charsets, and guesses for unlabelled or mislabelled bytes."""

from __future__ import annotations

import pytest

from mailgate.parse.charsets import decode_bytes, guess_decode
from mailgate.parse.detect import guess_charset

SHORT_TEXTS = [
    ("Zażółć gęślą jaźń", "iso8859-2"),
    ("Zażółć gęślą jaźń", "cp1250"),
    ("Michał Wójcik", "iso8859-2"),
    ("Zamówienie", "cp1250"),
    ("Не работает почта", "koi8-r"),
    ("Не работает почта", "cp1251"),
    ("Ольга", "cp1251"),
    ("Ольга", "koi8-r"),
    ("您好，我的邮箱无法登录", "gb18030"),
    ("王小明", "gb18030"),
    ("請求書を送ります", "shift_jis"),
    ("山田太郎", "shift_jis"),
    ("お世話になっております", "euc_jp"),
    ("您好，我的郵箱無法登錄", "big5"),
    ("Größe der Änderung für Müller", "cp1252"),
    ("Réponse à votre question", "cp1252"),
    ("Příliš žluťoučký kůň úpěl ďábelské ódy", "cp1250"),
    ("Ďakujem, pošta už funguje", "iso8859-2"),
    ("Čeština", "iso8859-2"),
    ("café 120 € – ok", "cp1252"),
    # EUC-KR Hangul and GB2312 hanzi share byte ranges: told apart by common characters.
    ("감사합니다", "cp949"),
    ("안녕하세요", "cp949"),
    ("확인 부탁드립니다", "cp949"),
    ("谢谢", "gb18030"),
    ("密码错误", "gb18030"),
    ("您好", "big5"),
    ("ありがとう", "euc_jp"),
    ("Árvíztűrő tükörfúrógép", "iso8859-2"),
    ("Ståle Øvergård", "cp1252"),
]


@pytest.mark.parametrize(("text", "charset"), SHORT_TEXTS)
def test_short_texts_are_guessed_right(text: str, charset: str) -> None:
    data = text.encode(charset)
    assert data.decode(guess_charset(data)) == text


def test_a_declared_hint_wins_when_it_reads_as_text() -> None:
    data = "Иван".encode("koi8-r")
    assert guess_decode(data, ("koi8-r",)) == ("Иван", True)
    # Polish read as Latin-1 is "Za¿ó³æ": never the guess.
    assert guess_decode("Zażółć".encode("cp1250"))[0] == "Zażółć"


def test_seven_bit_charsets_are_decoded() -> None:
    defects: list[str] = []
    assert decode_bytes("テスト".encode("iso2022_jp"), "ISO-2022-JP", defects, "body") == "テスト"
    assert decode_bytes("Café".encode("utf-7"), "utf-7", defects, "body") == "Café"
    assert decode_bytes("您好".encode("hz"), "HZ-GB-2312", defects, "body") == "您好"
    assert defects == []
    # Unlabelled ISO-2022-JP is recognised by its escape sequences.
    assert decode_bytes("テスト".encode("iso2022_jp"), None, defects, "body") == "テスト"
    assert defects == ["body:undeclared-7bit"]


def test_a_wrong_single_byte_label_is_second_guessed_only_when_it_reads_as_junk() -> None:
    defects: list[str] = []
    polish = "Zażółć gęślą jaźń, faktura jest błędna.".encode("cp1250")
    assert decode_bytes(polish, "iso-8859-1", defects, "body").startswith("Zażółć")
    assert defects == ["body:charset-mismatch"]
    defects.clear()
    german = "Größe für Müller".encode("iso-8859-1")
    assert decode_bytes(german, "iso-8859-1", defects, "body") == "Größe für Müller"
    assert defects == []


@pytest.mark.parametrize(
    ("label", "text"),
    [("x-cp1250", "Zażółć"), ("cp-1251", "Привет"), ("windows-31j", "請求書"), ("utf8", "Zoë")],
)
def test_label_aliases(label: str, text: str) -> None:
    codec = {"x-cp1250": "cp1250", "cp-1251": "cp1251", "windows-31j": "cp932"}.get(label, "utf-8")
    defects: list[str] = []
    assert decode_bytes(text.encode(codec), label, defects, "body") == text
    assert defects == []


@pytest.mark.parametrize(
    ("text", "actual"),
    [
        ("Добрый день, не работает почта на сервере.", "cp1251"),
        ("こんにちは、メールが届きません。確認してください。", "shift_jis"),
        ("您好，我们的服务器无法访问，请帮忙检查。", "gb18030"),
    ],
)
def test_a_latin1_label_over_cyrillic_or_east_asian_bytes_is_second_guessed(
    text: str, actual: str
) -> None:
    defects: list[str] = []
    assert decode_bytes(text.encode(actual), "iso-8859-1", defects, "body") == text
    assert defects == ["body:charset-mismatch"]


@pytest.mark.parametrize(
    "text", ["Très bien, à côté de l'église.", "Ærø og Åsa", "Straße über Köln", "ÉÀÈÔÛ"]
)
def test_latin1_text_with_accented_runs_keeps_its_label(text: str) -> None:
    defects: list[str] = []
    assert decode_bytes(text.encode("iso-8859-1"), "iso-8859-1", defects, "body") == text
    assert defects == []
