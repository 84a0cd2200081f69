"""Who may do what: the per-peer permission table and the policy for unknown callers.

Room: services/. Imports config only. With no peers configured the archive is
open (every calling AE may use every service), as a fresh `scripts/serve` must be; with an
allow-list, known peers get their services and unknown callers get `unknown_callers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacs.config import SERVICES, Peer, Settings

_EVERY_SERVICE = frozenset(SERVICES)
_UNKNOWN_SERVICES = {
    "echo-store": frozenset({"echo", "store"}),
    "echo": frozenset({"echo"}),
    "reject": frozenset(),
}


@dataclass(frozen=True)
class AccessPolicy:
    """The permission table of one server."""

    peers: tuple[Peer, ...]
    unknown_callers: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """The policy the settings describe."""
        return cls(settings.peers, settings.unknown_callers)

    @property
    def is_open(self) -> bool:
        """True when no allow-list is configured: anyone may do anything."""
        return not self.peers

    @property
    def rejects_unknown_callers(self) -> bool:
        """Whether an association from an unknown calling AE is refused outright."""
        return not self.is_open and self.unknown_callers == "reject"

    def known_titles(self) -> list[str]:
        """The calling AE titles the allow-list names."""
        return sorted({peer.ae_title for peer in self.peers})

    def services_for(self, calling_ae: str, host: str) -> frozenset[str]:
        """The services `calling_ae` connecting from `host` may use."""
        if self.is_open:
            return _EVERY_SERVICE
        calling_ae = calling_ae.strip()
        granted: set[str] = set()
        for peer in self.peers:
            if peer.ae_title == calling_ae and peer.host in (None, host):
                granted |= peer.services
        if granted:
            return frozenset(granted)
        return _UNKNOWN_SERVICES[self.unknown_callers]

    def allows(self, calling_ae: str, host: str, service: str) -> bool:
        """Whether `calling_ae` from `host` may use `service` (echo, store, find, move, get)."""
        return service in self.services_for(calling_ae, host)
