"""The lab Kubernetes API's credentials, made once per lab in `<state>/pki/`: a CA, the API
server's certificate signed by it (for 127.0.0.1, localhost and the in-cluster names), the
admin user's bearer token, and the key that signs ServiceAccount tokens.

Keys and tokens are written mode 600 and never printed; the kubeconfig carries the CA and the
admin token, as a cluster's admin kubeconfig does. Only the lab writes these files.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from pathlib import Path

from irlib.lab.config import LabConfig

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "apiserver.crt"
SERVER_KEY = "apiserver.key"
ADMIN_TOKEN = "admin.token"
SIGNING_KEY = "sa-signing.key"  # HMAC key of the ServiceAccount tokens (authn.py)
FILES = (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, ADMIN_TOKEN, SIGNING_KEY)

# the names a pod reaches the API by, as kubeadm puts them in the apiserver's certificate
DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
IP_ADDRESSES = ("127.0.0.1", "::1", "10.96.0.1")
CA_DAYS = 3650
SERVER_DAYS = 365


def path(config: LabConfig, name: str) -> Path:
    return config.pki_dir / name


def write_private(target: Path, data: bytes) -> None:
    """Write `data` to `target` mode 600, atomically: a reader sees the old file or the new."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


def ensure(config: LabConfig) -> None:
    """Make whatever credential is missing; a lab keeps its CA and tokens across restarts."""
    config.pki_dir.mkdir(parents=True, exist_ok=True)
    config.pki_dir.chmod(0o700)
    if not all(path(config, name).exists() for name in (CA_CERT, CA_KEY)):
        _make_ca(config)
        for stale in (SERVER_CERT, SERVER_KEY):
            path(config, stale).unlink(missing_ok=True)
    if not all(path(config, name).exists() for name in (SERVER_CERT, SERVER_KEY)):
        _make_server_cert(config)
    for name in (ADMIN_TOKEN, SIGNING_KEY):
        if not path(config, name).exists():
            write_private(path(config, name), secrets.token_urlsafe(32).encode())


def read(config: LabConfig, name: str) -> str:
    return path(config, name).read_text().strip()


# -- certificates (cryptography: the lab extra) --------------------------------------------


def _make_ca(config: LabConfig) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "irlib-lab-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(
        path(config, CA_KEY),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    path(config, CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_server_cert(config: LabConfig) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(path(config, CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key(path(config, CA_KEY).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in DNS_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(
        path(config, SERVER_KEY),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    path(config, SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
