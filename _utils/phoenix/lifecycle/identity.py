"""Verify an EC2 instance identity document: the proof a new minion gives of which instance it is.

An instance reads its identity document and its base64 ``signature`` from the instance metadata
service (``http://169.254.169.254/latest/dynamic/instance-identity/document`` and ``.../signature``) and
sends both as ``autosign_grains``. The ``signature`` form is an RSA PKCS#1 v1.5 signature over the
SHA-256 of the exact document bytes (AWS: "Verify the instance identity document using the
base64-encoded signature", https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/verify-iid.html).

Which certificate verifies it:

* **Production:** AWS's **RSA** public certificate for the instance's region (not the DSA certificate,
  which is for the ``pkcs7`` form, nor the RSA-2048 one, which is for ``rsa2048``), published at
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/regions-certs.html. Copy it from there into
  a file on the master; never fetch it at run time from the instance or anything it controls.
* **Tests and demo:** localcloud's per-run test certificate (``LocalCloud.identity_certificate_pem``
  or ``GET <endpoint>/_localcloud/identity/certificate``).

Pure logic (``cryptography`` only, which Salt already requires); the caller decides what ``now`` is
(against localcloud, the cloud's virtual clock, e.g. the ``Date`` of an AWS response) and keeps the
record that makes each document usable once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
REQUIRED = ("accountId", "instanceId", "pendingTime", "region")

# IdentityError.reason values
MALFORMED = "malformed"
BAD_CERTIFICATE = "bad-certificate"
BAD_SIGNATURE = "bad-signature"
WRONG_INSTANCE = "wrong-instance"
TOO_OLD = "too-old"
FROM_THE_FUTURE = "from-the-future"


class IdentityError(Exception):
    """The document does not prove the instance's identity; ``reason`` is one of the codes above and
    the message says what was wrong and with which input."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def load_certificate(certificate_pem: str | bytes) -> x509.Certificate:
    """The RSA certificate in ``certificate_pem``; ``IdentityError(bad-certificate)`` otherwise."""
    data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError(BAD_CERTIFICATE, f"the configured certificate is not a PEM X.509 certificate "
                                             f"({exc}): use AWS's RSA certificate for the region") from None
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        raise IdentityError(BAD_CERTIFICATE, "the configured certificate has no RSA key: the base64 "
                                             "'signature' form needs AWS's RSA certificate, not the DSA one")
    return certificate


def parse_time(text: Any) -> dt.datetime:
    """``2026-12-01T09:35:49Z`` (AWS's pendingTime) as an aware UTC datetime."""
    if not isinstance(text, str):
        raise IdentityError(MALFORMED, f"pendingTime must be an ISO 8601 text, got {text!r}")
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise IdentityError(MALFORMED, f"pendingTime {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def verify(document: str, signature_b64: str, certificate_pem: str, *, instance_id: str, now: dt.datetime,
           max_age_seconds: float, max_skew_seconds: float = 300.0) -> dict[str, Any]:
    """The parsed identity document, once it proves to be ``instance_id``'s, signed by the certificate's
    key, and launched (``pendingTime``) at most ``max_age_seconds`` before ``now``.

    Raises :class:`IdentityError` with ``reason`` ``malformed`` (not text/JSON/base64, a field missing),
    ``bad-certificate``, ``bad-signature`` (another key, or the document changed by one byte),
    ``wrong-instance`` (the document names another instance), ``too-old`` or ``from-the-future``
    (``pendingTime`` more than ``max_skew_seconds`` after ``now``: clocks disagree or it is forged).

    Example (what key acceptance does with a minion's ``autosign_grains``):

    .. code-block:: python

        doc = verify(grains["phoenix_identity_document"], grains["phoenix_identity_signature"],
                     certificate_pem, instance_id=minion_id, now=aws_now, max_age_seconds=3600)
    """
    if not isinstance(instance_id, str) or not INSTANCE_ID.match(instance_id):
        raise IdentityError(MALFORMED, f"instance id {instance_id!r} does not look like i-0123456789abcdef0")
    if not isinstance(document, str) or not document.strip():
        raise IdentityError(MALFORMED, f"the identity document of {instance_id} is missing or not text")
    if not isinstance(signature_b64, str) or not signature_b64.strip():
        raise IdentityError(MALFORMED, f"the identity signature of {instance_id} is missing or not text")
    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(MALFORMED, f"the identity signature of {instance_id} is not base64") from None
    public_key = load_certificate(certificate_pem).public_key()
    try:
        public_key.verify(signature, document.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise IdentityError(BAD_SIGNATURE, f"the identity document of {instance_id} is not signed by the "
                                           "configured certificate's key (forged, altered or another "
                                           "region's)") from None
    try:
        parsed = json.loads(document)
    except json.JSONDecodeError as exc:
        raise IdentityError(MALFORMED, f"the identity document of {instance_id} is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise IdentityError(MALFORMED, f"the identity document of {instance_id} is not a JSON object")
    missing = [key for key in REQUIRED if not parsed.get(key)]
    if missing:
        raise IdentityError(MALFORMED, f"the identity document of {instance_id} lacks {', '.join(missing)}")
    if parsed["instanceId"] != instance_id:
        raise IdentityError(WRONG_INSTANCE, f"the identity document names {parsed['instanceId']!r}, "
                                            f"not {instance_id!r}")
    pending = parse_time(parsed["pendingTime"])
    current = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
    age = (current - pending).total_seconds()
    if age > max_age_seconds:
        raise IdentityError(TOO_OLD, f"the identity document of {instance_id} is from {parsed['pendingTime']}, "
                                     f"{age:.0f} s ago (at most {max_age_seconds:g} s allowed)")
    if -age > max_skew_seconds:
        raise IdentityError(FROM_THE_FUTURE, f"the identity document of {instance_id} is from "
                                             f"{parsed['pendingTime']}, {-age:.0f} s after now: check the "
                                             "master's clock")
    return parsed
