"""The settings one server or command runs with, as frozen dataclasses, and the fixed choices
they take (duplicate policies, services, log levels, HTTP permissions).

Room: config. Standard library only; imported by services/ and the faces through pacs.config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    # Seconds a C-MOVE destination association stays open for the next C-MOVE to the same
    # destination (0: released after each C-MOVE).
    association_close_delay: float = 5.0
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
