"""A throwaway certificate authority per fake, so clients verify the fake exactly as they verify Flowmailer."""

from __future__ import annotations

import ssl

import trustme

from flowmailer.testing._fake._api import API_HOST, LOGIN_HOST

__all__ = ["WRONG_HOST", "Certificates"]

#: The name on the certificate an address in WRONG_CERTIFICATE mode serves (same CA, wrong name).
WRONG_HOST = "wrong.flowmailer.test"


class Certificates:
    """The CA, the server certificate for the fake's names, and one for another name signed by the same CA."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="flowmailer FakeFlowmailer")
        self.server = self._context(self._ca.issue_cert(API_HOST, LOGIN_HOST, "localhost"))
        self.wrong = self._context(self._ca.issue_cert(WRONG_HOST))

    @staticmethod
    def _context(cert: trustme.LeafCert) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context

    @property
    def ca_pem(self) -> bytes:
        pem: bytes = self._ca.cert_pem.bytes()
        return pem

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only and checks host names."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._ca.configure_trust(context)
        return context
