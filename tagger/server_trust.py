"""Model trust for serving: a detached ed25519 signature over each version's manifest.

The manifest records the sha256 of every model file, and loading checks those hashes; so a valid
signature over the manifest vouches for the whole version. With ``tagger serve --model-public-key
KEY.pem`` (the key kept outside the models folder, e.g. a separately mounted secret), a version is
served only if ``manifest.json.sig`` beside its ``manifest.json`` is a valid signature of the
manifest's exact bytes by the matching private key. Whoever can write the models folder but does not
hold the private key cannot get a model served: an unsigned or wrongly signed version is refused like
any version that fails to load (logged, counted as a failed reload, the old model keeps serving).

Order matters: the signature is checked on the manifest bytes *before* anything else in the folder is
read, and after loading, the manifest the loader used must equal the signed one (a manifest swapped
between the two reads is refused).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tagger.artifacts import MANIFEST_FILE, ArtifactError

__all__ = ["SIGNATURE_FILE", "ManifestVerifier", "generate_key_pair", "sign_manifest"]

SIGNATURE_FILE = MANIFEST_FILE + ".sig"  # base64 of the 64-byte ed25519 signature, one line


def _public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an ed25519 public key")
    return key


class ManifestVerifier:
    """Checks version folders against one ed25519 public key (see the module docstring)."""

    def __init__(self, public_key: Path) -> None:
        try:
            self.key = _public_key(public_key)
        except (OSError, ValueError) as e:
            raise OSError(f"--model-public-key: {e}") from e

    def verify(self, version_dir: Path) -> dict[str, Any]:
        """The signed manifest of ``version_dir``; raises ArtifactError if it is not validly signed."""
        manifest_path, sig_path = Path(version_dir) / MANIFEST_FILE, Path(version_dir) / SIGNATURE_FILE
        try:
            data = manifest_path.read_bytes()
            signature = base64.b64decode(sig_path.read_text(encoding="ascii").strip(), validate=True)
        except FileNotFoundError as e:
            raise ArtifactError(f"{version_dir} is not signed ({Path(e.filename).name} missing) and "
                                "--model-public-key requires a signed manifest") from e
        except (OSError, ValueError) as e:
            raise ArtifactError(f"cannot read the signature of {version_dir}: {e}") from e
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            raise ArtifactError(f"{sig_path} is not a valid signature of {manifest_path} by the configured "
                                "--model-public-key; refusing the version") from None
        try:
            return json.loads(data)
        except ValueError as e:
            raise ArtifactError(f"signed manifest {manifest_path} is not JSON: {e}") from e

    @staticmethod
    def check_loaded(signed: dict[str, Any], loaded_manifest: dict[str, Any], version_dir: Path) -> None:
        """Refuse a load whose manifest is not the one that was verified (changed between the reads)."""
        if signed != loaded_manifest:
            raise ArtifactError(f"{version_dir / MANIFEST_FILE} changed while it was loaded; refusing the version")


def sign_manifest(version_dir: Path, private_key: Path) -> Path:
    """Write ``manifest.json.sig`` for a version folder with a PEM ed25519 private key; returns its path."""
    key = serialization.load_pem_private_key(Path(private_key).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{private_key}: not an ed25519 private key")
    signature = key.sign((Path(version_dir) / MANIFEST_FILE).read_bytes())
    out = Path(version_dir) / SIGNATURE_FILE
    out.write_text(base64.b64encode(signature).decode("ascii") + "\n", encoding="ascii")
    return out


def generate_key_pair(private_out: Path, public_out: Path) -> None:
    """A new ed25519 key pair as PEM files (the private one readable by its owner only)."""
    key = Ed25519PrivateKey.generate()
    private_out = Path(private_out)
    private_out.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    private_out.chmod(0o600)
    Path(public_out).write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
