"""Users, passwords and API tokens: what `microseg user` and the server's /api/users share.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
option); API tokens and session cookies are 256-bit random strings, stored as their SHA-256
(a random token needs no slow hash: there is nothing to guess from it), shown once.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from microseg.model import MicrosegError
from microseg.store import Store
from microseg.store.accounts import TokenRecord, UserRecord
from microseg.store.schema import ROLES

# What each role may do, lowest first: each role may also do everything of those before it.
# viewer: read; editor: workspaces, imports, changes; approver: approve and run changes;
# admin: users, devices, credentials, settings.
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps one login from costing much
TOKEN_PREFIX = "mst_"

_hasher = PasswordHasher()


def check_user_name(name: str) -> None:
    if not USER_NAME.fullmatch(name):
        raise MicrosegError(
            f"user name {name[:70]!r}: 1 to 64 characters, letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise MicrosegError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise MicrosegError(f"password: at most {MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


# Verified when the user does not exist, so a login takes as long for an unknown name.
_DUMMY_HASH = _hasher.hash("microseg-no-such-user")


def verify_password(user: UserRecord | None, password: str) -> bool:
    """True when `password` is the user's (an unknown or disabled user never matches)."""
    if len(password) > MAX_PASSWORD:
        return False
    stored = _DUMMY_HASH if user is None else user.password_hash
    matches: bool
    try:
        matches = _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        matches = False
    return matches and user is not None and not user.disabled


def secret_hash(secret: str) -> str:
    """The SHA-256 (hex) a token or session cookie is stored and looked up by."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def add_user(store: Store, name: str, role: str, password: str) -> UserRecord:
    check_user_name(name)
    return store.accounts.add_user(name, role, hash_password(password))


def set_password(store: Store, name: str, password: str) -> UserRecord:
    return store.accounts.update_user(name, password_hash=hash_password(password))


def create_token(store: Store, user: str, name: str) -> tuple[TokenRecord, str]:
    """A new API token for `user`: its record, and the token itself (shown once)."""
    if not name or len(name) > 200 or not name.isprintable():
        raise MicrosegError("token name: 1 to 200 printable characters")
    token = new_secret(TOKEN_PREFIX)
    return store.accounts.add_token(user, name, secret_hash(token)), token


def may(role: str, minimum: str) -> bool:
    """Whether `role` may do what needs `minimum`."""
    return ROLE_RANK[role] >= ROLE_RANK[minimum]
