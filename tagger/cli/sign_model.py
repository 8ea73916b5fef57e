"""`tagger sign-model`: sign a model version's manifest for `tagger serve --model-public-key`, or make a key pair."""
from __future__ import annotations

import argparse
from pathlib import Path

from tagger.cli import CLIError

EPILOG = """\
examples:
  tagger sign-model --new-key /secure/model-signing.pem /etc/tagger/model-signing.pub.pem
  tagger sign-model --key /secure/model-signing.pem models/arabic-news-topics/5
  tagger serve --model-public-key /etc/tagger/model-signing.pub.pem

Keep the private key away from the machines that write the models folder; mount only the public key
next to the server. See docs/security.md.
"""


def register(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("versions", nargs="*", type=Path, metavar="VERSION_DIR",
                   help="model version folders to sign (writes manifest.json.sig in each)")
    p.add_argument("--key", type=Path, default=None, help="PEM ed25519 private key to sign with")
    p.add_argument("--new-key", nargs=2, type=Path, default=None, metavar=("PRIVATE", "PUBLIC"),
                   help="write a new ed25519 key pair (PEM) and exit")


def run(args: argparse.Namespace) -> int:
    from tagger.artifacts import MANIFEST_FILE
    from tagger.server_trust import generate_key_pair, sign_manifest

    if args.new_key is not None:
        private, public = args.new_key
        for path in (private, public):
            if path.exists():
                raise CLIError(f"{path} exists; not overwriting a key")
        try:
            generate_key_pair(private, public)
        except OSError as e:
            raise CLIError(f"{e.filename}: {e.strerror or e}") from e
        print(f"private key {private} (keep it off the serving and publishing machines), public key {public}")
        return 0
    if args.key is None or not args.versions:
        raise CLIError("give --key PRIVATE.pem and one or more VERSION_DIRs (or --new-key PRIVATE PUBLIC)")
    for version in args.versions:
        if not (version / MANIFEST_FILE).is_file():
            raise CLIError(f"{version}: no {MANIFEST_FILE} (give a model version folder, e.g. models/NAME/5)")
        try:
            print(sign_manifest(version, args.key))
        except (OSError, ValueError) as e:
            raise CLIError(f"cannot sign {version}: {e}") from e
    return 0
