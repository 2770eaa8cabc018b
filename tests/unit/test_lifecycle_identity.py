"""phoenix.lifecycle.identity.verify against documents signed the way AWS signs them (localcloud's
signer: RSA PKCS#1 v1.5 / SHA-256, AWS's document layout), and localcloud's address pool."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket

import pytest

from localcloud.addresses import AddressPool, bindable
from localcloud.identity import IdentitySigner
from phoenix.lifecycle.identity import IdentityError, verify

IID = "i-0123456789abcdef0"
LAUNCHED = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def signer() -> IdentitySigner:
    return IdentitySigner("us-east-1")


@pytest.fixture(scope="module")
def other_signer() -> IdentitySigner:
    return IdentitySigner("us-east-1", key_size=1024)


def issue(signer: IdentitySigner, instance_id: str = IID, when: dt.datetime = LAUNCHED):
    return signer.issue(instance_id=instance_id, account_id="123456789012", availability_zone="us-east-1a",
                        image_id="ami-12c6146b", instance_type="t3.micro",
                        pending_time=when.strftime("%Y-%m-%dT%H:%M:%SZ"), private_ip="127.42.0.1")


def check(doc, signature=None, cert=None, *, instance_id=IID, now=LAUNCHED + dt.timedelta(seconds=30),
          max_age=600, **extra):
    return verify(doc.document.decode() if hasattr(doc, "document") else doc,
                  signature if signature is not None else doc.signature,
                  cert, instance_id=instance_id, now=now, max_age_seconds=max_age, **extra)


def test_a_genuine_document_verifies_and_is_returned_parsed(signer):
    doc = issue(signer)
    parsed = check(doc, cert=signer.certificate_pem)
    assert parsed["instanceId"] == IID and parsed["privateIp"] == "127.42.0.1"
    assert parsed["pendingTime"] == "2026-12-01T09:00:00Z" and parsed["region"] == "us-east-1"
    # AWS's layout: pretty-printed, "key" : value, with AWS's null fields
    text = doc.document.decode()
    assert text.startswith('{\n  "accountId" : "123456789012",\n') and '"kernelId" : null' in text
    # the signature is the base64 of PKCS#1 v1.5 over SHA-256 of the exact bytes (AWS's 'signature' form)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    key = x509.load_pem_x509_certificate(signer.certificate_pem.encode()).public_key()
    key.verify(base64.b64decode(doc.signature), doc.document, padding.PKCS1v15(), hashes.SHA256())


def test_signature_wrapped_over_lines_still_verifies(signer):
    doc = issue(signer)
    wrapped = "\n".join(doc.signature[i:i + 64] for i in range(0, len(doc.signature), 64))
    assert check(doc, wrapped, signer.certificate_pem)["instanceId"] == IID


@pytest.mark.parametrize("mutate", [
    lambda text: text.replace("127.42.0.1", "127.42.0.2"),           # another address
    lambda text: text.replace('"t3.micro"', '"t3.large"'),
    lambda text: text + "\n",                                        # one byte more
    lambda text: text.replace(" : ", ": "),                          # same JSON, other bytes
])
def test_an_altered_document_is_refused(signer, mutate):
    doc = issue(signer)
    with pytest.raises(IdentityError) as err:
        check(mutate(doc.document.decode()), doc.signature, signer.certificate_pem)
    assert err.value.reason == "bad-signature"


def test_a_document_signed_by_another_key_is_refused(signer, other_signer):
    doc = issue(other_signer)
    with pytest.raises(IdentityError) as err:
        check(doc, cert=signer.certificate_pem)
    assert err.value.reason == "bad-signature" and IID in str(err.value)


def test_a_document_of_another_instance_is_refused(signer):
    doc = issue(signer, instance_id="i-0fedcba9876543210")
    with pytest.raises(IdentityError) as err:
        check(doc, cert=signer.certificate_pem)
    assert err.value.reason == "wrong-instance" and "i-0fedcba9876543210" in err.value.message


def test_an_old_document_is_refused_and_age_is_measured_against_now(signer):
    doc = issue(signer)
    assert check(doc, cert=signer.certificate_pem, now=LAUNCHED + dt.timedelta(seconds=600))
    with pytest.raises(IdentityError) as err:
        check(doc, cert=signer.certificate_pem, now=LAUNCHED + dt.timedelta(seconds=601))
    assert err.value.reason == "too-old" and "601 s ago" in err.value.message
    with pytest.raises(IdentityError) as err:
        check(doc, cert=signer.certificate_pem, now=LAUNCHED - dt.timedelta(hours=1))
    assert err.value.reason == "from-the-future"
    naive = (LAUNCHED + dt.timedelta(seconds=5)).replace(tzinfo=None)  # naive = UTC
    assert check(doc, cert=signer.certificate_pem, now=naive)


@pytest.mark.parametrize("document, signature, instance_id", [
    ("", "AAAA", IID),
    (None, "AAAA", IID),
    ("{}", "", IID),
    ("{}", "not base64!", IID),
    ("{}", "AAAA", "web-1"),                                        # not an instance id
])
def test_malformed_input_is_refused_with_a_reason(signer, document, signature, instance_id):
    with pytest.raises(IdentityError) as err:
        verify(document, signature, signer.certificate_pem, instance_id=instance_id, now=LAUNCHED,
               max_age_seconds=60)
    assert err.value.reason == "malformed"


def test_signed_but_incomplete_or_non_json_documents_are_malformed(signer):
    for text in ("not json", '["a list"]', json.dumps({"instanceId": IID})):
        with pytest.raises(IdentityError) as err:
            check(text, signer.sign(text.encode()), signer.certificate_pem)
        assert err.value.reason == "malformed", text


def test_a_bad_certificate_is_named(signer):
    doc = issue(signer)
    with pytest.raises(IdentityError) as err:
        check(doc, cert="-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    assert err.value.reason == "bad-certificate" and "RSA certificate" in err.value.message


def test_address_pools_hold_distinct_slash16s_and_hand_out_bindable_unique_addresses():
    first, second = AddressPool(), AddressPool()
    try:
        assert first.second_octet != second.second_octet  # the /16 is held while the pool lives
        addresses = [first.allocate() for _ in range(300)]
        assert len(set(addresses)) == 300 and "127.0.0.1" not in addresses
        assert all(a.startswith(f"127.{first.second_octet}.") for a in addresses)
        assert all(not a.endswith((".0", ".255")) for a in addresses)
        assert all(bindable(a) for a in addresses[:5])
        held = first.second_octet
        first.close()
        sock = socket.socket(socket.AF_UNIX)
        try:  # released: the name can be taken again
            sock.bind(f"\0phoenix-localcloud-127.{held}")
        finally:
            sock.close()
    finally:
        first.close()
        second.close()


def test_an_address_that_cannot_be_bound_is_skipped(monkeypatch):
    import localcloud.addresses as addresses

    assert not bindable("192.0.2.1")  # not an address of this machine: the real check says no
    pool = AddressPool()
    try:
        refused = f"127.{pool.second_octet}.0.1"
        monkeypatch.setattr(addresses, "bindable", lambda a: a != refused)
        assert pool.allocate() == f"127.{pool.second_octet}.0.2"
    finally:
        pool.close()
