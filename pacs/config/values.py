"""Parsing one setting's value, from TOML, an environment variable or a flag: each parser
returns the typed value or raises `ConfigError` with what was wrong.

Room: config. Standard library and config/settings only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pacs.config.settings import (
    HTTP_ANY_PORT,
    HTTP_PERMISSIONS,
    SERVICES,
    HttpUser,
    Peer,
    RemoteAE,
)


def parse_ae_title(value: Any) -> str:
    """An AE title: 1-16 characters of the default repertoire, no backslash or controls."""
    text = str(value).strip()
    if not text:
        raise ValueError("an AE title cannot be empty")
    if len(text) > 16:
        raise ValueError(f"{text!r} is longer than 16 characters")
    if not all(" " <= ch <= "~" and ch != "\\" for ch in text):
        raise ValueError(f"{text!r} has characters an AE title may not hold")
    return text


def parse_port(value: Any) -> int:
    """A TCP port 0-65535 (0: any free port)."""
    port = _parse_int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is out of range 0-65535")
    return port


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None


def _positive_int(value: Any) -> int:
    number = _parse_int(value)
    if number < 1:
        raise ValueError(f"{number} must be at least 1")
    return number


def _positive_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{number} must be greater than 0")
    return number


def _non_negative_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not number >= 0:
        raise ValueError(f"{number} must be 0 or more")
    return number


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _choice(options: tuple[str, ...], upper: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        text = text.upper() if upper else text.lower()
        if text not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return text

    return parse


def _parse_pdu(value: Any) -> int:
    number = _parse_int(value)
    # 0 means unlimited in PS3.8; otherwise at least the 4 KiB the standard allows peers to assume.
    if number != 0 and not 4096 <= number <= 2**32 - 1:
        raise ValueError(f"{number} must be 0 (unlimited) or 4096-4294967295")
    return number


def _parse_database(value: Any) -> str:
    text = str(value).strip()
    if not re.match(r"^(sqlite|postgres|postgresql)(\+pool)?://", text):
        raise ValueError(f"{text!r} is not a sqlite:///PATH or postgresql://... URL")
    return text


_REMOTE = re.compile(r"^(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d+)$")


def parse_remote(value: Any) -> RemoteAE:
    """AE@HOST:PORT, or a TOML table with ae_title, host, port and optional tls."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"ae_title", "host", "port", "tls"}
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r} in a remote entry")
        missing = {"ae_title", "host", "port"} - set(value)
        if missing:
            raise ValueError(f"a remote entry needs {', '.join(sorted(missing))}")
        return RemoteAE(
            parse_ae_title(value["ae_title"]),
            str(value["host"]),
            parse_port(value["port"]),
            _parse_bool(value.get("tls", False)),
        )
    match = _REMOTE.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not AE@HOST:PORT")
    return RemoteAE(
        parse_ae_title(match["ae"]), match["host"].strip("[]"), parse_port(match["port"])
    )


def _parse_remotes(value: Any) -> tuple[RemoteAE, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of remote entries")
    return tuple(v if isinstance(v, RemoteAE) else parse_remote(v) for v in value)


def _parse_ports(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of ports")
    return tuple(parse_port(v) for v in value)


def parse_peer(value: Any) -> Peer:
    """A [[peer]] table (ae_title, optional host, optional services), or a bare AE title."""
    if isinstance(value, Peer):
        return value
    if not isinstance(value, Mapping):
        return Peer(parse_ae_title(value))
    unknown = set(value) - {"ae_title", "host", "services"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} in a peer entry")
    if "ae_title" not in value:
        raise ValueError("a peer entry needs ae_title")
    services = value.get("services", list(SERVICES))
    if isinstance(services, str):
        services = [v for v in re.split(r"[,\s]+", services) if v]
    bad = [s for s in services if s not in SERVICES]
    if bad:
        raise ValueError(f"{bad[0]!r} is not one of {', '.join(SERVICES)}")
    host = value.get("host")
    return Peer(parse_ae_title(value["ae_title"]), str(host) if host else None,
                frozenset(services))


def _parse_peers(value: Any) -> tuple[Peer, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of peers")
    return tuple(parse_peer(v) for v in value)


def _optional_port(value: Any) -> int | None:
    if value is None or str(value).strip().lower() in ("", "none", "off"):
        return None
    return parse_port(value)


def _optional_path(value: Any) -> Path | None:
    return Path(str(value)) if value not in (None, "") else None


def _size(value: Any) -> int:
    number = _parse_int(value)
    if number < 0:
        raise ValueError(f"{number} must be 0 (unlimited) or more")
    return number


def _parse_http_port(value: Any) -> int:
    if str(value).strip().lower() == "auto":
        return HTTP_ANY_PORT
    return parse_port(value)


def _parse_words(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list")
    return tuple(str(v).strip() for v in value)


def _parse_permissions(value: Any) -> frozenset[str]:
    words = _parse_words(value)
    bad = [w for w in words if w not in HTTP_PERMISSIONS]
    if bad:
        raise ValueError(f"{bad[0]!r} is not one of {', '.join(HTTP_PERMISSIONS)}")
    return frozenset(words)


def _parse_public_root(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if text and not re.match(r"^https?://[^/\s]+(/\S*)?$", text):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text


def parse_http_user(value: Any) -> HttpUser:
    """An [[http_user]] table (name, password and/or token, permissions) or NAME:PASSWORD."""
    if isinstance(value, HttpUser):
        return value
    if not isinstance(value, Mapping):
        name, _, password = str(value).strip().partition(":")
        if not name or not password:
            raise ValueError(f"{value!r} is not NAME:PASSWORD")
        return HttpUser(name, password=password)
    unknown = set(value) - {"name", "password", "token", "permissions"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} in an http_user entry")
    name = str(value.get("name", "")).strip()
    if not name or ":" in name:
        raise ValueError("an http_user entry needs a name without ':'")
    password, token = str(value.get("password", "")), str(value.get("token", ""))
    if not password and not token:
        raise ValueError(f"http_user {name!r} needs a password or a token")
    permissions = _parse_permissions(value.get("permissions", list(HTTP_PERMISSIONS)))
    return HttpUser(name, password, token, permissions)


def _parse_http_users(value: Any) -> tuple[HttpUser, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of http users")
    return tuple(parse_http_user(v) for v in value)
