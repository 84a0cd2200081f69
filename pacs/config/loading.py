"""Loading settings: built-in defaults < config/pacs.toml < PACS_* environment < command-line
flags, the table of every setting (`SPECS`), and the start-up checks of storage and TLS.

Room: config. Standard library and config/settings, config/values only. Every setting is
validated here; a bad one raises `ConfigError` with one line that names it and where it came
from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pacs.config.settings import (
    DUPLICATE_POLICIES,
    HTTP_TLS_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    UNKNOWN_CALLER_POLICIES,
    ConfigError,
    Settings,
)
from pacs.config.values import (
    _choice,
    _non_negative_float,
    _optional_path,
    _optional_port,
    _parse_bool,
    _parse_database,
    _parse_http_port,
    _parse_http_users,
    _parse_pdu,
    _parse_peers,
    _parse_permissions,
    _parse_ports,
    _parse_public_root,
    _parse_remotes,
    _parse_words,
    _positive_float,
    _positive_int,
    _size,
    parse_ae_title,
    parse_port,
)


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
    SettingSpec("association_close_delay", "retrieve.association_close_delay",
                _non_negative_float),
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
