"""--model-public-key: only versions whose manifest carries a valid ed25519 signature by the key kept
outside the models folder are served; unsigned, tampered or foreign-signed versions are refused like
a version that fails to load, and the signed model keeps serving."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tagger.artifacts import MANIFEST_FILE, ArtifactError, resolve_model_dir
from tagger.client import TaggerClient
from tagger.config import ServeConfig
from tagger.paths import default_model_root
from tagger.server import make_holder, running
from tagger.server_trust import SIGNATURE_FILE, generate_key_pair, sign_manifest

NAME = "arabic-news-topics"


def publish(root: Path, version: int) -> Path:
    """The shipped model copied in as ``version`` (a hidden folder renamed into place, as publishing does)."""
    tmp = root / f".tmp-{version}"
    shutil.copytree(resolve_model_dir(default_model_root()), tmp)
    (tmp / SIGNATURE_FILE).unlink(missing_ok=True)
    manifest = json.loads((tmp / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["version"] = str(version)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    os.rename(tmp, root / str(version))
    return root / str(version)


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    keys = tmp_path / "keys"  # outside the models folder
    keys.mkdir()
    generate_key_pair(keys / "ours.pem", keys / "ours.pub.pem")
    generate_key_pair(keys / "theirs.pem", keys / "theirs.pub.pem")
    assert (keys / "ours.pem").stat().st_mode & 0o077 == 0  # the private key is its owner's only
    return {p.stem: p for p in keys.iterdir()}


def config(root: Path, key: Path) -> ServeConfig:
    return ServeConfig(host="127.0.0.1", port=0, workers=1, threads=4, metrics_port=0, reload_interval=0, grace=1,
                       model=root, model_public_key=key)


def test_only_validly_signed_versions_are_served(tmp_path: Path, keys: dict[str, Path]) -> None:
    root = tmp_path / NAME
    root.mkdir()
    sign_manifest(publish(root, 1), keys["ours"])
    holder = make_holder(config(root, keys["ours.pub"]))
    assert holder.load_initial().version == f"{NAME}/1"

    publish(root, 2)  # unsigned: refused, version 1 keeps serving
    assert not holder.check_now() and holder.current.version == f"{NAME}/1"
    assert "is not signed" in holder.last_error

    sign_manifest(root / "2", keys["theirs"])  # signed, but by a key the server does not trust
    assert not holder.check_now() and "not a valid signature" in holder.last_error

    sign_manifest(root / "2", keys["ours"])  # now vouched for: served
    assert holder.check_now() and holder.current.version == f"{NAME}/2"

    v3 = publish(root, 3)
    sign_manifest(v3, keys["ours"])
    manifest = json.loads((v3 / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["thresholds"] = {t: 0.01 for t in manifest["thresholds"]}  # tampered after signing
    (v3 / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    assert not holder.check_now() and holder.current.version == f"{NAME}/2"
    assert "not a valid signature" in holder.last_error


def test_a_server_with_no_signed_version_does_not_start_and_a_signed_one_serves(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    root = tmp_path / NAME
    root.mkdir()
    publish(root, 1)
    with pytest.raises(ArtifactError, match="not signed"):
        make_holder(config(root, keys["ours.pub"])).load_initial()
    sign_manifest(root / "1", keys["ours"])
    with running(config(root, keys["ours.pub"])) as srv, TaggerClient(f"127.0.0.1:{srv.port}", timeout=20) as c:
        assert c.tag({"text": "فرضت واشنطن عقوبات جديدة على موسكو"}).model_version == f"{NAME}/1"
    with pytest.raises(OSError, match="--model-public-key"):
        make_holder(config(root, keys["ours"]))  # a private key where the public one belongs


def test_sign_model_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tagger sign-model` (its module; registering the command name is the CLI's table)."""
    import argparse

    from tagger.cli import CLIError
    from tagger.cli import sign_model

    def run(argv: list[str]) -> int:
        p = argparse.ArgumentParser()
        sign_model.register(p)
        return sign_model.run(p.parse_args(argv))

    private, public = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    assert run(["--new-key", str(private), str(public)]) == 0
    with pytest.raises(CLIError, match="exists"):
        run(["--new-key", str(private), str(public)])
    root = tmp_path / NAME
    root.mkdir()
    version = publish(root, 1)
    assert run(["--key", str(private), str(version)]) == 0
    assert (version / SIGNATURE_FILE).is_file()
    assert make_holder(config(root, public)).load_initial().version == f"{NAME}/1"
    with pytest.raises(CLIError, match="no manifest.json"):
        run(["--key", str(private), str(tmp_path)])
