"""Signed policy weights: only the learner holding the private key changes the policy.

The learner signs every PolicyWeights message with an Ed25519 key (`cryptography`); a policy
node acts only on weights whose signature verifies with the learner's public key. The sha256 in
the message binds the signature to the weight bytes, so what is signed is the text
"robofume-weights|<version>|<sha256>". A key pair is two PEM files, `<name>` (private, mode 0600)
and `<name>.pub`; the learner makes them on its first start when they are missing. On two hosts,
copy the `.pub` file to the robot PC and pass it to the policy (`weights_key:=` names the pair).

Integrity was already guarded by the sha256; this adds origin: a process elsewhere on the ROS
domain can publish weights, but cannot sign them. (DDS Security / SROS2 would also authenticate
the transport; the PyPI Fast DDS build has no security plugins, see docs/real_robot.md.)
No ROS imports.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class SigningError(ValueError):
    """A key file that cannot be used, or weights whose signature does not verify."""


def _payload(version: int, sha256: str) -> bytes:
    return f"robofume-weights|{int(version)}|{sha256}".encode()


def public_key_path(private_key: Path) -> Path:
    return Path(str(private_key) + ".pub")


def key_id(public_key) -> str:
    """Short fingerprint of a public key (what a PolicyWeights message names as its signer)."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_or_create_private_key(path) -> object:
    """The learner's signing key at `path`; made (with `path`.pub beside it) when missing."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path).expanduser()
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        public_key_path(path).write_bytes(pub)
        return key
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise SigningError(f"signing key {path} is not a PEM private key without a password: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"signing key {path} is a {type(key).__name__}, expected an Ed25519 key")
    if not public_key_path(path).exists():  # the public half went missing: write it again
        public_key_path(path).write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return key


def load_public_key(path) -> object:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path).expanduser()
    if not path.exists():
        raise SigningError(f"trusted key {path} does not exist (the learner writes it next to its signing key)")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as e:
        raise SigningError(f"trusted key {path} is not a PEM public key: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"trusted key {path} is a {type(key).__name__}, expected an Ed25519 public key")
    return key


def sign_weights(private_key, version: int, sha256: str) -> bytes:
    return private_key.sign(_payload(version, sha256))


def verify_weights(public_key, version: int, sha256: str, signature: bytes) -> None:
    """Raises SigningError unless `signature` is the trusted learner's over (version, sha256)."""
    from cryptography.exceptions import InvalidSignature

    if not signature:
        raise SigningError("unsigned weights")
    if not sha256:
        raise SigningError("weights without a sha256")
    try:
        public_key.verify(bytes(signature), _payload(version, sha256))
    except InvalidSignature:
        raise SigningError("signature does not verify with the trusted key (forged, or another learner's)") from None
