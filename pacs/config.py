"""Settings: built-in defaults < config/pacs.toml < PACS_* environment < command-line flags.

Room: config, beside services/; standard library only, imported by services/ and the faces.
Every setting is validated here; a bad one raises `ConfigError` with one line that names it and
where it came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DUPLICATE_POLICIES = ("keep", "replace", "reject")
# commitment, worklist and mpps: the modality services of PS3.4 Annexes J, K and F.
SERVICES = ("echo", "store", "find", "move", "get", "commitment", "worklist", "mpps")
UNKNOWN_CALLER_POLICIES = ("echo-store", "echo", "reject")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
HTTP_PERMISSIONS = ("read", "store")
HTTP_TLS_MODES = ("auto", "on", "off")
# http.port "auto": any free port (tests, ad hoc runs); 0 turns HTTP off.
HTTP_ANY_PORT = -1


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class RemoteAE:
    """A peer we may open associations to: a C-MOVE destination."""

    ae_title: str
    host: str
    port: int
    tls: bool = False


@dataclass(frozen=True)
class Peer:
    """A known calling AE (optionally only from one host) and the services it may use."""

    ae_title: str
    host: str | None = None
    services: frozenset[str] = frozenset(SERVICES)


@dataclass(frozen=True)
class HttpUser:
    """An HTTP user of the DICOMweb face: Basic password and/or bearer token, permissions."""

    name: str
    password: str = ""
    token: str = ""
    permissions: frozenset[str] = frozenset(HTTP_PERMISSIONS)


@dataclass(frozen=True)
class Settings:
    """Everything the server and the CLI are configured with."""

    ae_title: str = "MINIPACS"
    host: str = "0.0.0.0"
    port: int = 11112
    storage: Path = Path("data/archive")
    database: str = "sqlite:///data/index.sqlite"
    remotes: tuple[RemoteAE, ...] = ()
    log_level: str = "INFO"
    log_format: str = "text"
    duplicates: str = "keep"
    max_pdu: int = 262144
    max_associations: int = field(default_factory=lambda: max(64, 32 * (os.cpu_count() or 2)))
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    pn_case_insensitive: bool = True
    max_find_results: int = 100000
    strict_hierarchy: bool = False  # refuse keys outside the hierarchy (PS3.4 C.4.1.2.1)
    reply_to_requester: bool = False
    reply_ports: tuple[int, ...] = ()
    require_called_ae: bool = True
    peers: tuple[Peer, ...] = ()
    unknown_callers: str = "echo-store"
    max_dataset_size: int = 4 * 2**30
    tls_port: int | None = None
    tls_only: bool = False
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_require_client_certificate: bool = False
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    http_port: int = 8080
    http_host: str = ""  # empty: the same address as server.host
    http_public_root: str = ""  # e.g. https://pacs.example.org: URLs we hand out behind a proxy
    http_cors_origins: tuple[str, ...] = ()
    http_tls: str = "auto"  # auto: HTTPS when [tls] certificate and key are set
    http_users: tuple[HttpUser, ...] = ()
    http_anonymous: frozenset[str] = frozenset()  # what callers without credentials may do

    @property
    def http_listen_host(self) -> str:
        """The address the HTTP face listens on."""
        return self.http_host or self.host

    @property
    def https(self) -> bool:
        """Whether the HTTP face serves HTTPS with the [tls] certificate."""
        has_certificate = self.tls_certificate is not None and self.tls_key is not None
        return self.http_tls != "off" and has_certificate
    worklist_folder: Path | None = None
    commitment_retry_interval: float = 60.0
    commitment_expiry: float = 86400.0

    def remote(self, ae_title: str) -> RemoteAE | None:
        """The configured remote with this AE title, if any."""
        for entry in self.remotes:
            if entry.ae_title == ae_title.strip():
                return entry
        return None


# --- parsers: text or TOML value -> typed value, ValueError with a reason -------------------

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


@dataclass(frozen=True)
class SettingSpec:
    """Where one setting lives in the TOML file and how its value is parsed."""

    name: str
    toml_key: str  # "section.key"
    parse: Callable[[Any], Any]


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("ae_title", "server.ae_title", parse_ae_title),
    SettingSpec("host", "server.host", lambda v: str(v).strip()),
    SettingSpec("port", "server.port", parse_port),
    SettingSpec("max_pdu", "server.max_pdu", _parse_pdu),
    SettingSpec("max_associations", "server.max_associations", _positive_int),
    SettingSpec("require_called_ae", "server.require_called_ae", _parse_bool),
    SettingSpec("acse_timeout", "timeouts.acse", _positive_float),
    SettingSpec("dimse_timeout", "timeouts.dimse", _positive_float),
    SettingSpec("network_timeout", "timeouts.network", _positive_float),
    SettingSpec("storage", "storage.path", lambda v: Path(str(v))),
    SettingSpec("duplicates", "storage.duplicates", _choice(DUPLICATE_POLICIES)),
    SettingSpec("database", "database.url", _parse_database),
    SettingSpec("pn_case_insensitive", "query.pn_case_insensitive", _parse_bool),
    SettingSpec("max_find_results", "query.max_results", _positive_int),
    SettingSpec("strict_hierarchy", "query.strict_hierarchy", _parse_bool),
    SettingSpec("reply_to_requester", "retrieve.reply_to_requester", _parse_bool),
    SettingSpec("reply_ports", "retrieve.reply_ports", _parse_ports),
    SettingSpec("log_level", "log.level", _choice(LOG_LEVELS, upper=True)),
    SettingSpec("log_format", "log.format", _choice(LOG_FORMATS)),
    SettingSpec("remotes", "remote", _parse_remotes),
    SettingSpec("peers", "peer", _parse_peers),
    SettingSpec("unknown_callers", "security.unknown_callers", _choice(UNKNOWN_CALLER_POLICIES)),
    SettingSpec("max_dataset_size", "limits.max_dataset_size", _size),
    SettingSpec("tls_port", "tls.port", _optional_port),
    SettingSpec("tls_only", "tls.only", _parse_bool),
    SettingSpec("tls_certificate", "tls.certificate", _optional_path),
    SettingSpec("tls_key", "tls.key", _optional_path),
    SettingSpec("tls_ca", "tls.ca", _optional_path),
    SettingSpec("tls_require_client_certificate", "tls.require_client_certificate", _parse_bool),
    SettingSpec("metrics_port", "metrics.port", parse_port),
    SettingSpec("metrics_host", "metrics.host", lambda v: str(v).strip()),
    SettingSpec("http_port", "http.port", _parse_http_port),
    SettingSpec("http_host", "http.host", lambda v: str(v).strip()),
    SettingSpec("http_public_root", "http.public_root", _parse_public_root),
    SettingSpec("http_cors_origins", "http.cors_origins", _parse_words),
    SettingSpec("http_tls", "http.tls", _choice(HTTP_TLS_MODES)),
    SettingSpec("http_anonymous", "http.anonymous", _parse_permissions),
    SettingSpec("http_users", "http_user", _parse_http_users),
    SettingSpec("worklist_folder", "worklist.folder", _optional_path),
    SettingSpec("commitment_retry_interval", "commitment.retry_interval", _positive_float),
    SettingSpec("commitment_expiry", "commitment.expiry", _positive_float),
)
_SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
_SPEC_BY_TOML = {spec.toml_key: spec for spec in SPECS}


def env_name(name: str) -> str:
    """The environment variable of a setting: ae_title -> PACS_AE_TITLE."""
    return "PACS_" + name.upper()


def _apply(values: dict[str, Any], name: str, raw: Any, origin: str) -> None:
    spec = _SPEC_BY_NAME[name]
    try:
        values[name] = spec.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name!r} ({origin}): {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    found: dict[str, Any] = {}
    for section, content in document.items():
        if section in ("remote", "peer", "http_user"):
            found[section] = content
            continue
        if not isinstance(content, dict):
            raise ConfigError(f"config file {path}: unknown key {section!r}")
        for key, value in content.items():
            dotted = f"{section}.{key}"
            if dotted not in _SPEC_BY_TOML:
                raise ConfigError(f"config file {path}: unknown key {dotted!r}")
            found[dotted] = value
    return found


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, the TOML file, PACS_* variables and flag overrides, in that order."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file is not None:
        for dotted, raw in _read_toml(config_file).items():
            spec = _SPEC_BY_TOML[dotted]
            _apply(values, spec.name, raw, f"in {config_file}")
    for spec in SPECS:
        variable = env_name(spec.name)
        if variable in environ:
            _apply(values, spec.name, environ[variable], f"from {variable}")
    for name, raw in (overrides or {}).items():
        if raw is not None:
            flag = "--" + name.replace("_", "-")
            _apply(values, name, raw, f"from {flag}")
    settings = Settings()
    known = {f.name for f in fields(Settings)}
    settings = replace(settings, **{k: v for k, v in values.items() if k in known})
    check_tls(settings)
    if settings.http_tls == "on" and not settings.https:
        raise ConfigError("setting 'http_tls': 'on' needs tls.certificate and tls.key")
    for name in ("tls_certificate", "tls_key") if settings.https else ():
        if not getattr(settings, name).is_file():
            raise ConfigError(f"setting {name!r}: {getattr(settings, name)} is not a readable file")
    return settings


def check_tls(settings: Settings) -> None:
    """A TLS port needs a certificate and key that exist; tls.only needs a TLS port."""
    if settings.tls_only and settings.tls_port is None:
        raise ConfigError("setting 'tls_only': needs tls.port")
    if settings.tls_port is None:
        return
    for name in ("tls_certificate", "tls_key"):
        path = getattr(settings, name)
        if path is None:
            raise ConfigError(f"setting {name!r}: required when tls.port is set")
        if not path.is_file():
            raise ConfigError(f"setting {name!r}: {path} is not a readable file")
    if settings.tls_require_client_certificate and settings.tls_ca is None:
        raise ConfigError("setting 'tls_ca': required with tls.require_client_certificate")


def check_storage(path: Path) -> None:
    """The archive folder must exist (it is created) and be writable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"setting 'storage': cannot create {path}: {exc.strerror}") from None
    if not path.is_dir() or not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"setting 'storage': {path} is not a readable, writable folder")
