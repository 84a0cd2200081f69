"""Who may do what over HTTP: users with a Basic password or a bearer token, and permissions.

Room: services/. Imports config only; the web face hands it the Authorization header and asks
whether the caller may `read` (QIDO-RS, WADO-RS, WADO-URI) or `store` (STOW-RS). As with the
DIMSE allow-list, no users configured means open: everyone may do everything.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from pacs.config import HTTP_PERMISSIONS, HttpUser, Settings

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """An HTTP caller: a configured user's name (or "anonymous") and what it may do."""

    name: str
    permissions: frozenset[str]
    authenticated: bool = False

    def may(self, permission: str) -> bool:
        """Whether this caller has `permission` ("read" or "store")."""
        return permission in self.permissions


class BadCredentials(Exception):
    """Credentials were given but match no user (HTTP 401)."""


@dataclass(frozen=True)
class HttpAccessPolicy:
    """The HTTP users of one server and what callers without credentials may do."""

    users: tuple[HttpUser, ...]
    anonymous: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpAccessPolicy:
        """The policy the settings describe."""
        return cls(settings.http_users, settings.http_anonymous)

    @property
    def is_open(self) -> bool:
        """True when no users are configured: anyone may read and store."""
        return not self.users

    def caller(self, authorization: str | None) -> Caller:
        """The caller an Authorization header names; raises BadCredentials for wrong ones."""
        if self.is_open:
            return Caller(ANONYMOUS, frozenset(HTTP_PERMISSIONS))
        if not authorization:
            return Caller(ANONYMOUS, self.anonymous)
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "basic":
            name, password = _basic(credentials)
            for user in self.users:
                if user.password and _same(user.name, name) and _same(user.password, password):
                    return Caller(user.name, user.permissions, True)
        elif scheme.lower() == "bearer":
            for user in self.users:
                if user.token and _same(user.token, credentials):
                    return Caller(user.name, user.permissions, True)
        raise BadCredentials(f"{scheme or 'empty'} credentials match no user")


def _basic(credentials: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("malformed Basic credentials") from None
    name, separator, password = decoded.partition(":")
    if not separator:
        raise BadCredentials("malformed Basic credentials")
    return name, password


def _same(expected: str, given: str) -> bool:
    # Constant time: a wrong password takes as long as a nearly right one.
    return hmac.compare_digest(expected.encode(), given.encode())
