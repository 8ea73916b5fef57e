"""Hot reload: new versions are loaded, verified, warmed and swapped in; bad ones are refused while
the old model keeps serving; half-written (hidden) folders are never read."""
from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagger.artifacts import MANIFEST_FILE, MODEL_FILE, copy_version, resolve_model_dir
from tagger.client import TaggerClient
from tagger.config import ServeConfig
from tagger.paths import default_model_root
from tagger.server import TaggerServer, running
from tagger.server_reload import ModelSource

NAME = "arabic-news-topics"
SHIPPED = resolve_model_dir(default_model_root())


def publish_copy(root: Path, version: int, *, corrupt: bool = False) -> Path:
    """Publish the shipped model as ``version`` (tagger.artifacts.copy_version: a hidden folder renamed
    into place). ``corrupt`` then flips bytes of the model file, so its sha256 no longer matches."""
    if not corrupt:
        return copy_version(SHIPPED, root, version)
    staged = copy_version(SHIPPED, root.parent / "staging" / root.name, version)
    with open(staged / MODEL_FILE, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    os.rename(staged, root / str(version))  # appears whole, as a publish would
    return root / str(version)


@pytest.fixture()
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / NAME
    root.mkdir()
    publish_copy(root, 1)
    return root


def config(model_root: Path, **changes: object) -> ServeConfig:
    return ServeConfig(host="127.0.0.1", port=0, workers=1, threads=8, metrics_port=0, model=model_root,
                       reload_interval=0, grace=1).with_overrides(**changes)


@pytest.fixture()
def server(model_root: Path) -> Iterator[TaggerServer]:
    with running(config(model_root)) as srv:  # reload_interval 0: the test drives check_now()
        yield srv


def version(client: TaggerClient) -> str:
    return client.tag({"text": "فرضت واشنطن عقوبات جديدة على موسكو"}).model_version


def reloads(server: TaggerServer, result: str) -> float:
    return server.metrics.registry.get_sample_value("tagger_model_reloads_total", {"result": result}) or 0


def test_new_version_is_swapped_in_and_bad_ones_are_refused(server: TaggerServer, model_root: Path) -> None:
    holder = server.holder
    with TaggerClient(f"127.0.0.1:{server.port}") as client:
        assert version(client) == f"{NAME}/1"
        assert not holder.check_now()  # nothing new

        (model_root / ".tmp-5-writing").mkdir()  # a publish in progress is invisible
        (model_root / ".tmp-5-writing" / MANIFEST_FILE).write_text("{")
        assert not holder.check_now()

        publish_copy(model_root, 2)
        assert holder.check_now()
        assert version(client) == f"{NAME}/2"
        assert client.model_info().version == f"{NAME}/2"

        publish_copy(model_root, 3, corrupt=True)
        assert not holder.check_now()
        assert version(client) == f"{NAME}/2"  # the old model keeps serving
        assert "sha256 mismatch" in holder.last_error
        assert not holder.check_now()  # refused once, not reloaded (and logged) every poll
        assert (reloads(server, "ok"), reloads(server, "failed")) == (1, 1)

        publish_copy(model_root, 4)
        assert holder.check_now() and version(client) == f"{NAME}/4"

        shutil.rmtree(model_root / "4")  # withdrawing a version rolls back to the newest good one
        assert holder.check_now() and version(client) == f"{NAME}/2"
        assert server.metrics.registry.get_sample_value("tagger_model_info", {"version": f"{NAME}/2"}) == 1
        assert server.metrics.registry.get_sample_value("tagger_model_info", {"version": f"{NAME}/1"}) == 0


def test_background_reload_under_load_fails_no_request(model_root: Path) -> None:
    with running(config(model_root, reload_interval=0.05)) as server, \
            TaggerClient(f"127.0.0.1:{server.port}", timeout=20) as client:
        seen: Counter[str] = Counter()
        errors: list[BaseException] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    seen[version(client)] += 1
                except Exception as e:  # any failure fails the test
                    errors.append(e)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            publish_copy(model_root, 2, corrupt=True)
            publish_copy(model_root, 3)
            for _ in range(400):
                if seen[f"{NAME}/3"] >= 20:
                    break
                stop.wait(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors
        assert seen[f"{NAME}/1"] > 0 and seen[f"{NAME}/3"] >= 20
        assert f"{NAME}/2" not in seen


def test_a_version_folder_is_pinned(model_root: Path) -> None:
    assert not ModelSource(model_root / "1").reloadable
    assert ModelSource(model_root).reloadable
    with running(config(model_root / "1", reload_interval=0.05)) as server:
        publish_copy(model_root, 2)
        assert not server.holder.check_now()
        assert server.holder.current is not None and server.holder.current.version == f"{NAME}/1"
