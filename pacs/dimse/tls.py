"""TLS contexts for our DICOM listeners and for our outgoing associations (BCP 195).

Room: dimse/. Imports config only; both the server and the C-MOVE destination use it.
"""

from __future__ import annotations

import ssl

from pacs.config import Settings


def tls_server_context(settings: Settings) -> ssl.SSLContext:
    """Server-side TLS as BCP 195 asks: TLS 1.2 or later, ECDHE with AES-GCM or ChaCha20."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.load_cert_chain(str(settings.tls_certificate), str(settings.tls_key))
    if settings.tls_ca is not None:
        context.load_verify_locations(str(settings.tls_ca))
    context.verify_mode = (
        ssl.CERT_REQUIRED if settings.tls_require_client_certificate
        else ssl.CERT_OPTIONAL if settings.tls_ca is not None else ssl.CERT_NONE
    )
    return context


def tls_client_context(settings: Settings) -> ssl.SSLContext:
    """Client-side TLS for outgoing associations (C-MOVE to a remote marked tls)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(settings.tls_ca) if settings.tls_ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # DICOM peers are named by AE title, not host name
    if settings.tls_certificate and settings.tls_key:
        context.load_cert_chain(str(settings.tls_certificate), str(settings.tls_key))
    return context
