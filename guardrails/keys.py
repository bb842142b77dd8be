"""Reviewer keys: Ed25519 key pairs (the `cryptography` library), private keys outside the workspace.

A reviewer's private key lives in the user's key folder (``$TETHER_KEYS_DIR``, else the user config
dir's ``tether/keys``), one PEM file per name, mode 0600 in a 0700 folder, optionally encrypted with a
passphrase. Only the CLI commands a person runs (init, approve, reject, rollback, reviewer add/remove)
read it; the run process never does. The workspace holds only public keys.

Public keys are stored as raw 32-byte hex; `public_pem` gives the SubjectPublicKeyInfo PEM that
standard tooling reads, so anyone can check a statement with, for example,
``openssl pkeyutl -verify -pubin -inkey KEY.pem -rawin -in statement.json -sigfile statement.sig``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tether_types import EXIT_USAGE, TetherError

KEYS_ENV = "TETHER_KEYS_DIR"
PASSPHRASE_ENV = "TETHER_KEY_PASSPHRASE"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
# Actors the software itself writes under; none of them may ever be a reviewer.
RESERVED_NAMES = frozenset({"tether", "guardrails", "gate", "controller", "agent", "system"})


class KeyStoreError(TetherError, RuntimeError):
    """A reviewer key is missing, unreadable, or protected by a passphrase that was not given."""
    exit_code = EXIT_USAGE


def default_keys_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("tether")) / "keys"


def resolve_keys_dir(explicit: Path | None = None) -> Path:
    """``explicit``, else ``$TETHER_KEYS_DIR``, else the user config dir. Read once, by the CLI."""
    if explicit is not None:
        return explicit
    env = os.environ.get(KEYS_ENV)
    return Path(env) if env else default_keys_dir()


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a reviewer, or None. Run actors (``tether``, ``agent:<RUN_ID>``) never can."""
    if name.lower() in RESERVED_NAMES or name.lower().startswith("agent:"):
        return f"'{name}' is an actor of the software itself, not a person; it can never approve"
    if not NAME_PATTERN.match(name):
        return f"'{name}' is not a valid reviewer name (letters, digits, '.', '_', '-'; starts with a letter)"
    return None


def fingerprint(public_hex: str) -> str:
    """SHA-256 of the raw public key bytes, hex: how statements and signatures name a key."""
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_pem(public_hex_: str) -> str:
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex_))
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def verify(public_hex_: str, message: bytes, signature_hex: str) -> bool:
    """True only for a valid Ed25519 signature of exactly `message` by that key."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex_))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Signer:
    """A reviewer's loaded private key. Built only by the CLI from the user's key folder."""

    name: str
    key: Ed25519PrivateKey

    @property
    def public_hex(self) -> str:
        return public_hex(self.key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_hex)

    def sign(self, message: bytes) -> str:
        return self.key.sign(message).hex()


def key_path(keys_dir: Path, name: str) -> Path:
    problem = name_problem(name)
    if problem:
        raise KeyStoreError(problem)
    return keys_dir / f"{name}.pem"


def create_key(keys_dir: Path, name: str, passphrase: str | None = None) -> Signer:
    """Generate and store a new key pair for `name`; refuses to overwrite an existing key."""
    path = key_path(keys_dir, name)
    if path.exists():
        raise KeyStoreError(f"a key for '{name}' already exists at {path}; use it, or remove it by hand first")
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys_dir, 0o700)
    key = Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    # O_EXCL and mode 0600 at creation: the key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return Signer(name, key)


def has_key(keys_dir: Path, name: str) -> bool:
    return name_problem(name) is None and key_path(keys_dir, name).is_file()


def is_encrypted(keys_dir: Path, name: str) -> bool:
    return b"ENCRYPTED" in key_path(keys_dir, name).read_bytes()[:64]


def load_key(keys_dir: Path, name: str, passphrase: str | None = None) -> Signer:
    """The private key of `name` from the key folder; refuses a key file others can read."""
    path = key_path(keys_dir, name)
    if not path.is_file():
        raise KeyStoreError(f"no private key for reviewer '{name}' in {keys_dir} (set ${KEYS_ENV} to the folder "
                        "that holds it, or ask an existing reviewer to `tether reviewer add` you)")
    if path.stat().st_mode & 0o077:
        raise KeyStoreError(f"{path} is readable by other users; `chmod 600 {path}` first")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), passphrase.encode() if passphrase else None)
    except TypeError:
        raise KeyStoreError(f"the key of '{name}' is protected by a passphrase: set ${PASSPHRASE_ENV}") from None
    except ValueError:
        raise KeyStoreError(f"cannot read the key of '{name}' at {path} (wrong passphrase?)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"{path} is not an Ed25519 key")
    return Signer(name, key)
