"""The site parts of the conformance statement: network interfaces and configuration (every
setting, the remote AEs), character sets, security, the media and annex sections.

Room: cli/. Imports config (the settings and their table) and pydicom's character set table;
no face.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydicom.charset import python_encoding

from pacs.cli.markdown import md_table
from pacs.config import SPECS, Settings


def _redact(url: str) -> str:
    """A database URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _value(name: str, value: Any) -> str:
    if name == "database":
        return f"`{_redact(str(value))}`"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value == ():
        return "none"
    if name in ("remotes", "peers"):
        return f"{len(value)} (4.4.1.2)" if name == "remotes" else f"{len(value)} (7.2)"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return f"`{value}`"


def network_and_configuration(settings: Settings) -> list[str]:
    """Sections 4.3 and 4.4: interfaces, AE titles, remote AEs, every setting."""
    tls = f"port {settings.tls_port}" if settings.tls_port is not None else "off"
    plain = "off (TLS only)" if settings.tls_only else f"port {settings.port}"
    remotes = [(r.ae_title, r.host, r.port, "yes" if r.tls else "no") for r in settings.remotes]
    return [
        "### 4.3 Network Interfaces", "",
        f"TCP/IP on `{settings.host}`: {plain}; DICOM TLS: {tls}. IPv4, and IPv6 when the "
        "listen address is an IPv6 address. TCP_NODELAY is set on every socket.", "",
        "### 4.4 Configuration", "",
        "#### 4.4.1 AE Title/Presentation Address Mapping", "",
        "##### 4.4.1.1 Local AE Titles", "",
        *md_table(("AE Title", "Address", "Port", "TLS port"),
                  [(settings.ae_title, settings.host, plain,
                    tls if settings.tls_port is not None else "none")]),
        "##### 4.4.1.2 Remote AE Titles", "",
        "The C-MOVE destinations (`[[remote]]`, `PACS_REMOTES`, `--remote`):", "",
        *(md_table(("AE Title", "Host", "Port", "TLS"), remotes) if remotes
          else ["none configured: every C-MOVE is answered `0xA801`.", ""]),
        "#### 4.4.2 Parameters", "",
        "Defaults < `config/pacs.toml` < `PACS_*` environment < command-line flags:", "",
        *md_table(("Setting", "TOML key", "Value"),
                  [(spec.name, f"`{spec.toml_key}`", _value(spec.name,
                                                            getattr(settings, spec.name)))
                   for spec in SPECS]),
    ]


def character_sets() -> list[str]:
    """Section 6: the Specific Character Set terms decoded."""
    terms = [term for term in python_encoding if term]
    return [
        "## 6 Support of Character Sets", "",
        "Received values are decoded with their Specific Character Set and kept as Unicode; "
        "stored files keep their bytes. Specific Character Set values decoded (none: the "
        "default repertoire):", "",
        ", ".join(f"`{term}`" for term in terms) + ".", "",
        "C-FIND requests are matched in Unicode; responses are `ISO_IR 192` when a value is "
        "not ASCII.", "",
    ]


def _services(services: Iterable[str]) -> str:
    return ", ".join(sorted(services))


def security(settings: Settings) -> list[str]:
    """Section 7: TLS, the allow-list, application level."""
    tls = ("TLS 1.2 or later, ECDHE with AES-GCM or ChaCha20 (BCP 195 profile); client "
           "certificate " + ("required" if settings.tls_require_client_certificate else
                             "checked when given" if settings.tls_ca else "not asked for")
           if settings.tls_port is not None else "off (no `tls.port`)")
    peers = [(p.ae_title, p.host or "any", _services(p.services)) for p in settings.peers]
    return [
        "## 7 Security", "",
        "### 7.1 Security Profiles", "",
        f"DICOM TLS: {tls}.", "",
        "### 7.2 Association Level Security", "",
        *(md_table(("Calling AE", "From host", "Services"), peers)
          + [f"Unknown callers (`security.unknown_callers`): `{settings.unknown_callers}`.",
             ""] if peers else
          ["No allow-list: every calling AE may use every service.", ""]),
        "### 7.3 Application Level Security", "",
        "None: no user identity is checked.", "",
    ]


def annexes() -> list[str]:
    """Sections 5 and 8."""
    return [
        "## 5 Media Interchange", "", "Not supported.", "",
        "## 8 Annexes", "",
        "### 8.1 IOD Contents", "",
        "minipacs creates no SOP instances; those it sends are the ones it stored, "
        "unchanged, or decompressed when the peer accepts no other syntax.", "",
        "### 8.2 Data Dictionary of Private Attributes", "", "None.", "",
        "### 8.3 Coded Terminology and Templates", "", "None.", "",
        "### 8.4 Grayscale Image Consistency", "", "Not applicable: nothing is displayed.",
        "",
        "### 8.5 Standard Extended / Specialized / Private SOP Classes", "", "None.", "",
        "### 8.6 Private Transfer Syntaxes", "", "None.", "",
    ]
