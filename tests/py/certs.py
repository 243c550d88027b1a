"""Test certificates, made in the test with Python's `cryptography` package (openssl 3.0's CLI
cannot backdate a certificate, which the expired-certificate test needs): a CA, server and client
certificates signed by it, PEM files and PKCS12 stores (a keytool-style trust store too)."""
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def name(*pairs):
    """pairs: (oid, value) in DER order (most general first)."""
    return x509.Name([x509.NameAttribute(o, v) for o, v in pairs])


class Issued:
    def __init__(self, cert, key):
        self.cert = cert
        self.key = key

    def cert_pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password=None):
        enc = (serialization.BestAvailableEncryption(password.encode()) if password
               else serialization.NoEncryption())
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def make_ca(cn="zkd test CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name((NameOID.COMMON_NAME, cn))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def issue(ca, subject, server, not_before=None, not_after=None):
    """A leaf certificate signed by `ca`; server certificates are for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
         .not_valid_after(not_after or NOW + datetime.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(
             [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
             critical=False))
    if server:
        import ipaddress
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return Issued(b.sign(ca.key, hashes.SHA256()), key)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


class Pki:
    """Everything a TLS test needs, under `dir`."""

    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.ca = make_ca()
        self.server = issue(self.ca, name((NameOID.COMMON_NAME, "localhost")), server=True)
        self.ca_pem = write(os.path.join(dir, "ca.pem"), self.ca.cert_pem())
        self.server_pem = write(os.path.join(dir, "server.pem"),
                                self.server.cert_pem() + self.server.key_pem())

    def client(self, fname, subject, **kw):
        """Writes fname.crt / fname.key for a client certificate; returns (crt, key) paths."""
        c = issue(kw.pop("ca", self.ca), subject, server=False, **kw)
        crt = write(os.path.join(self.dir, fname + ".crt"), c.cert_pem())
        key = write(os.path.join(self.dir, fname + ".key"), c.key_pem())
        return crt, key

    def server_p12(self, fname, password):
        data = pkcs12.serialize_key_and_certificates(
            b"server", self.server.key, self.server.cert, None,
            serialization.BestAvailableEncryption(password.encode()))
        return write(os.path.join(self.dir, fname), data)

    def trust_p12(self, fname, password):
        """A Java trust store (trusted-certificate entries, as keytool writes them)."""
        data = pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(self.ca.cert, b"ca")],
            serialization.BestAvailableEncryption(password.encode()))
        return write(os.path.join(self.dir, fname), data)

    def server_pem_encrypted(self, fname, password):
        return write(os.path.join(self.dir, fname), self.server.cert_pem() + self.server.key_pem(password))
