"""Settings: built-in defaults < config/pacs.toml < PACS_* environment < command-line flags.

Room: config, beside services/; standard library only, imported by services/ and the faces.
`settings.py` holds the dataclasses, `values.py` the parser of each value, `loading.py` the
table of settings and the layering; this module names what the rest of minipacs uses.
"""

from pacs.config.loading import (
    SPECS,
    SettingSpec,
    check_storage,
    check_tls,
    env_name,
    load_settings,
)
from pacs.config.settings import (
    DUPLICATE_POLICIES,
    HTTP_ANY_PORT,
    HTTP_PERMISSIONS,
    HTTP_TLS_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    SERVICES,
    UNKNOWN_CALLER_POLICIES,
    ConfigError,
    HttpUser,
    Peer,
    RemoteAE,
    Settings,
)
from pacs.config.values import parse_ae_title, parse_http_user, parse_peer, parse_port, parse_remote

__all__ = [
    "DUPLICATE_POLICIES", "HTTP_ANY_PORT", "HTTP_PERMISSIONS", "HTTP_TLS_MODES", "LOG_FORMATS",
    "LOG_LEVELS", "SERVICES", "SPECS", "UNKNOWN_CALLER_POLICIES", "ConfigError", "HttpUser",
    "Peer", "RemoteAE", "SettingSpec", "Settings", "check_storage", "check_tls", "env_name",
    "load_settings", "parse_ae_title", "parse_http_user", "parse_peer", "parse_port",
    "parse_remote",
]
