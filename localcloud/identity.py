"""Signed EC2 instance identity documents, one per instance, as the instance metadata service serves them.

AWS signs each instance's identity document with a per-region key; the base64-encoded ``signature``
form is an RSA PKCS#1 v1.5 signature over the SHA-256 of the exact document bytes, verified with the
region's RSA public certificate. localcloud does the same with an RSA key it generates when it starts
and a self-signed certificate for it (``LocalCloud.identity_certificate_pem``); tests give that
certificate to the verifier where production gives AWS's.

The document text follows AWS's layout (pretty-printed JSON, ``"key" : value``, AWS's key order, the
``null`` fields AWS includes), so verifiers that must work against AWS are tested against the same shape.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

DOCUMENT_VERSION = "2017-09-30"


@dataclass(frozen=True)
class IdentityDocument:
    """One instance's identity document (exact bytes) and its base64 signature."""

    instance_id: str
    document: bytes
    signature: str


def render_document(fields: dict[str, object]) -> bytes:
    """The document text in AWS's layout: ``{\\n  "key" : value,\\n ... }`` with JSON values."""
    import json

    lines = [f"  {json.dumps(key)} : {json.dumps(value)}" for key, value in fields.items()]
    return ("{\n" + ",\n".join(lines) + "\n}").encode()


class IdentitySigner:
    """A test signing key with its self-signed certificate, and the documents it signed."""

    def __init__(self, region: str, key_size: int = 2048) -> None:
        self.region = region
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        now = dt.datetime.now(dt.timezone.utc)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "localcloud (test only, not AWS)"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"localcloud instance identity {region}"),
        ])
        self._certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .sign(self._key, hashes.SHA256())
        )
        self._documents: dict[str, IdentityDocument] = {}
        self._lock = threading.Lock()

    @property
    def certificate_pem(self) -> str:
        """The certificate that verifies this signer's documents (PEM text)."""
        return self._certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, data: bytes) -> str:
        """AWS's ``signature`` form: base64 of RSA PKCS#1 v1.5 / SHA-256 over ``data``."""
        raw = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode()

    def issue(self, *, instance_id: str, account_id: str, availability_zone: str, image_id: str,
              instance_type: str, pending_time: str, private_ip: str,
              architecture: str = "x86_64") -> IdentityDocument:
        """Write and sign the document for one instance (kept for :meth:`get`)."""
        fields: dict[str, object] = {
            "accountId": account_id,
            "architecture": architecture,
            "availabilityZone": availability_zone,
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": image_id,
            "instanceId": instance_id,
            "instanceType": instance_type,
            "kernelId": None,
            "pendingTime": pending_time,
            "privateIp": private_ip,
            "ramdiskId": None,
            "region": self.region,
            "version": DOCUMENT_VERSION,
        }
        document = render_document(fields)
        issued = IdentityDocument(instance_id=instance_id, document=document, signature=self.sign(document))
        with self._lock:
            self._documents[instance_id] = issued
        return issued

    def get(self, instance_id: str) -> IdentityDocument | None:
        """The document issued for ``instance_id`` (None when there is none)."""
        with self._lock:
            return self._documents.get(instance_id)

    def forget(self, instance_id: str | None = None) -> None:
        """Drop one instance's document (or all)."""
        with self._lock:
            if instance_id is None:
                self._documents.clear()
            else:
                self._documents.pop(instance_id, None)
