"""Password hashes: checking a pasted account password against the directory's hash.

Hosting panels store their customers' passwords as bcrypt (``$2a$``/``$2b$``/``$2y$``),
argon2id, SHA-512 crypt (``$6$``) or PBKDF2-SHA256 (``$pbkdf2-sha256$`` as passlib
writes it, ``pbkdf2_sha256$`` as Django does).  ``verify`` checks one password against
one hash with a maintained library per format: ``bcrypt`` (pyca), ``argon2-cffi``, and
``libpass`` (the maintained fork of the abandoned passlib) for SHA-512 crypt and the two
PBKDF2 forms — it computes them itself, so nothing depends on the C library's
``crypt(3)`` or on Python's ``crypt`` module (deprecated, gone in 3.13).  A plaintext
or unknown value is never a hash: ``scheme`` says None and ``verify`` says False.

The pipeline (``pipeline.passwords``) calls it outside any transaction and counts the
failures; the values it passes around are in ``verify.credentials``.
"""

from __future__ import annotations

import re
from functools import cache

import argon2
import bcrypt
from passlib.hash import django_pbkdf2_sha256, pbkdf2_sha256, sha512_crypt

SCHEMES = ("bcrypt", "argon2id", "sha512-crypt", "pbkdf2-sha256")
_BCRYPT = re.compile(r"^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$")
_ARGON2ID = re.compile(r"^\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
_SHA512_CRYPT = re.compile(r"^\$6\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}$")
_PBKDF2 = re.compile(
    r"^(?:\$pbkdf2-sha256\$\d+\$[./A-Za-z0-9]+\$[./A-Za-z0-9]+|pbkdf2_sha256\$\d+\$\S+\$\S+)$"
)
_BCRYPT_MAX = 72  # bcrypt reads no further; PHP's password_hash truncated there too
# Verified when the login is unknown or has no hash, so that case costs what a real
# check costs (cost 10 is PHP's default, what most hosting panels store).
_DUMMY_PASSWORD = b"mailgate-dummy-password"


def scheme(stored: str | None) -> str | None:
    """The scheme of a stored hash, or None when it is not a hash we verify."""
    value = (stored or "").strip()
    if _BCRYPT.match(value):
        return "bcrypt"
    if _ARGON2ID.match(value):
        return "argon2id"
    if _SHA512_CRYPT.match(value):
        return "sha512-crypt"
    if _PBKDF2.match(value):
        return "pbkdf2-sha256"
    return None


def verify(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; False for anything that is not a hash."""
    value = (stored or "").strip()
    kind = scheme(value)
    secret = password.encode("utf-8")
    try:
        if kind == "bcrypt":
            return bcrypt.checkpw(secret[:_BCRYPT_MAX], value.encode("ascii"))
        if kind == "argon2id":
            return _argon2().verify(value, secret)
        if kind == "sha512-crypt":
            return bool(sha512_crypt.verify(secret, value))
        if kind == "pbkdf2-sha256":
            handler = pbkdf2_sha256 if value.startswith("$") else django_pbkdf2_sha256
            return bool(handler.verify(secret, value))
    except (ValueError, TypeError, argon2.exceptions.VerificationError):
        return False  # a mismatch, or a damaged hash: never an error for the mail
    return False


def verify_dummy(password: str, like: str | None = None) -> None:
    """Spend what checking a real hash spends, for a login without one.

    ``like`` is some other account's stored hash (the result is thrown away), so the
    time matches the schemes and costs this directory really uses; without one, a
    bcrypt hash of cost 10.
    """
    if scheme(like) is not None:
        verify(like, password)
        return
    bcrypt.checkpw(password.encode("utf-8")[:_BCRYPT_MAX], _dummy_hash())


@cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(_DUMMY_PASSWORD, bcrypt.gensalt(10))


@cache
def _argon2() -> argon2.PasswordHasher:
    return argon2.PasswordHasher()
