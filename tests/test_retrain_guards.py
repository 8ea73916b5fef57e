"""`tagger retrain` never publishes ungated by accident and fails fast on bad input:

- no live model (versions that do not load, a models/ folder of model folders, a missing or empty
  folder, a version folder) is an error; only --first-version creates version 1;
- `--model .` still names the model after its folder;
- every input, the gate gold included, is read and checked before training starts;
- gate gold that is also training gold (same id) is refused, as the README promises it is never trained on;
- --new rows with no text or with a mistyped field (``topic`` for ``topics``) are errors naming file:line.

Small on purpose: 150 gold and 300 corpus articles, 3k features, 2 folds, one job (about a second a model).
"""
from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_retrain_helpers import NAME, QUIET, article_json, write_jsonl

import tagger.training.retrain as retrain_mod
from tagger.artifacts import MANIFEST_FILE, MODEL_FILE, ArtifactError, list_versions, load_model
from tagger.cli import main as tagger_main
from tagger.io import InputError
from tagger.taxonomy import default_taxonomy
from tagger.training.data import read_articles, read_gold
from tagger.training.fit import TrainConfig
from tagger.training.pipeline import train_and_publish
from tagger.training.assemble import assemble_training_data
from tagger.training.gate import GatePolicy
from tagger.training.retrain import RetrainError, retrain

TINY = {"max_features": 3_000, "cv_folds": 2, "n_jobs": 1}
LENIENT = GatePolicy(tol=1, topic_tol=1, new_topic_min_f1=0)


@dataclass(frozen=True)
class Tiny:
    gold: Path
    corpus: Path
    dev: Path
    root: Path  # a model folder whose version 1 loads

    def args(self, root: Path | None = None) -> list[str]:
        return ["retrain", "--same-data", "--model", str(root or self.root), "--gold", str(self.gold), "--corpus",
                str(self.corpus), "--gold-eval", str(self.dev), *itertools.chain(*(
                    (f"--{k.replace('_', '-')}", str(v)) for k, v in TINY.items()))]

    def kwargs(self, **over) -> dict:
        return {"model_root": self.root, "gold": [self.gold], "corpus": self.corpus, "gold_eval": [self.dev],
                "config": TINY, "log": QUIET} | over


@pytest.fixture(scope="module")
def tiny_template(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Tiny:
    folder = tmp_path_factory.mktemp("tiny")
    tx = default_taxonomy()
    gold = write_jsonl(folder / "gold.jsonl",
                       (article_json(a, a.topics) for a in read_gold(shared_dir / "gold/train.jsonl.xz", tx)[:150]))
    corpus = write_jsonl(folder / "corpus.jsonl", (article_json(a) for a in itertools.islice(
        read_articles(shared_dir / "corpus/ant-train.jsonl.xz"), 5_000, 5_300)))
    root = folder / "models" / NAME
    train_and_publish(corpus=corpus, gold=[gold], dev=None, taxonomy=tx, model_root=root,
                      cfg=TrainConfig(seed=0, **TINY), log=QUIET)
    return Tiny(gold, corpus, shared_dir / "gold/dev.jsonl", root)


@pytest.fixture()
def tiny(tiny_template: Tiny, tmp_path: Path) -> Tiny:
    root = tmp_path / "models" / NAME
    shutil.copytree(tiny_template.root, root)
    return Tiny(tiny_template.gold, tiny_template.corpus, tiny_template.dev, root)


@pytest.fixture()
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training must not start: the checks under test come first."""
    def fit_model(*a, **k):
        raise AssertionError("training started before the inputs were checked")

    monkeypatch.setattr(retrain_mod, "fit_model", fit_model)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


# ------------------------------------------------------------------- 1. no live model, no gate
def test_versions_that_do_not_load_are_an_error_not_a_first_version(tiny: Tiny, capsys, no_training) -> None:
    # Version 1 left over in the old artifact format (a pickle), which this tagger no longer loads.
    manifest = tiny.root / "1" / MANIFEST_FILE
    m = json.loads(manifest.read_text("utf-8"))
    manifest.write_text(json.dumps(m | {"format": 1}), "utf-8")
    assert tagger_main([*tiny.args(), "--dry-run"]) == 2
    line = _error_line(capsys)
    assert line.startswith("tagger retrain: error: no version under") and "cannot be gated" in line
    assert "version 1:" in line and "artifact format 1 is not 2" in line, line

    # A corrupt newest version on top of it: both named, the newest with its reason.
    shutil.copytree(tiny.root / "1", tiny.root / "2")
    (tiny.root / "2" / MANIFEST_FILE).write_text(json.dumps(m | {"version": "2"}), "utf-8")
    (tiny.root / "2" / MODEL_FILE).write_bytes(b"not a model")
    assert tagger_main(tiny.args()) == 2
    line = _error_line(capsys)
    assert "version 2: sha256 mismatch" in line and "version(s) 1 do not load either" in line, line
    assert [p.name for p in list_versions(tiny.root)] == ["1", "2"]  # nothing published
    with pytest.raises(RetrainError, match="already has version"):
        retrain(**tiny.kwargs(), first_version=True)  # the flag does not bypass it: versions exist


def test_a_live_model_from_an_older_text_pipeline_is_still_the_gate(tiny: Tiny, capsys) -> None:
    """After a normalisation change the live model cannot be served by this tagger, but it is what
    servers run until its successor ships: retrain gates against it (warning), and says so."""
    manifest = tiny.root / "1" / MANIFEST_FILE
    m = json.loads(manifest.read_text("utf-8"))
    m["versions"]["normalization"] = "0"
    manifest.write_text(json.dumps(m), "utf-8")
    with pytest.raises(ArtifactError, match=rf"tagger retrain --model {tiny.root} --same-data"):
        load_model(tiny.root)
    rc = tagger_main([*tiny.args(), "--dry-run"])
    err = capsys.readouterr().err
    assert "warning: model" in err and "normalisation v0" in err and "gating against it" in err
    assert rc in (0, 1) and "live model: arabic-news-topics/1" in err


def test_a_models_folder_or_a_version_folder_is_not_a_model_root(tiny: Tiny, capsys, no_training) -> None:
    models = tiny.root.parent
    for extra in ([], ["--first-version"]):
        assert tagger_main([*tiny.args(models), *extra]) == 2
        line = _error_line(capsys)
        assert f"{models} holds model folders ({NAME}), not versions" in line
        assert f"--model {tiny.root}" in line, line
    assert tagger_main(tiny.args(tiny.root / "1")) == 2
    assert f"{tiny.root / '1'} is a model version folder" in _error_line(capsys)
    assert sorted(p.name for p in models.iterdir()) == [NAME] and list_versions(tiny.root / "1") == []


def test_a_first_version_needs_the_flag(tiny: Tiny, tmp_path: Path, capsys, no_training) -> None:
    typo = tmp_path / "models" / "arabic-news-topic"
    assert tagger_main(tiny.args(typo)) == 2
    line = _error_line(capsys)
    assert f"no model versions under {typo} (the folder does not exist)" in line
    assert "pass --first-version to create version 1" in line
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tagger_main(tiny.args(empty)) == 2
    assert f"no model versions under {empty}, so there is no live model" in _error_line(capsys)
    assert list(empty.iterdir()) == []
    # The flag is for a new model only.
    assert tagger_main([*tiny.args(), "--first-version"]) == 2
    line = _error_line(capsys)
    assert f"--first-version, but {tiny.root} already has version(s) 1" in line, line


def test_first_version_flag_creates_version_1(tiny: Tiny, tmp_path: Path, capsys) -> None:
    root = tmp_path / "new" / "my-model"
    report = tmp_path / "report.json"
    assert tagger_main([*tiny.args(root), "--first-version", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "first version, ungated" in out
    loaded = load_model(root)
    assert loaded.version == "my-model/1" and loaded.manifest["retrain"]["previous_version"] is None
    assert json.loads(report.read_text("utf-8"))["published"] == str(root / "1")


# ------------------------------------------------------------------- 2. the model's name
def test_model_root_dot_names_the_model_after_its_folder(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny.root)
    result = retrain(**tiny.kwargs(model_root=Path(".")), policy=LENIENT)
    assert result.decision.promote, result.decision.table()
    assert result.published == tiny.root / "2"  # absolute: --wait-served asks for "<parent name>/2"
    assert result.manifest["name"] == NAME and result.decision.live_version == f"{NAME}/1"
    assert load_model(tiny.root).version == f"{NAME}/2"
    # ... and a trailing `..` too (the folder named, not "..").
    monkeypatch.chdir(tiny.root / "2")
    assert retrain(**tiny.kwargs(model_root=Path("..")), policy=LENIENT, dry_run=True).manifest["name"] == NAME


# ----------------------------------------------------------- 3. inputs checked before training
def test_bad_gate_gold_fails_before_training(tiny: Tiny, tmp_path: Path, capsys, no_training) -> None:
    dev_rows = [json.loads(line) for line in tiny.dev.read_text("utf-8").splitlines()[:5]]
    unknown = write_jsonl(tmp_path / "dev-unknown.jsonl", [*dev_rows[:4], dev_rows[4] | {"topics": ["spaceflight"]}])
    broken = tmp_path / "dev-broken.jsonl"
    broken.write_text(json.dumps(dev_rows[0], ensure_ascii=False) + "\n{\"id\": \"x\", \n", "utf-8")
    empty = tmp_path / "dev-empty.jsonl"
    empty.write_text("\n", "utf-8")
    for path, match in ((unknown, "spaceflight"), (broken, "dev-broken.jsonl:2: invalid JSON"),
                        (empty, "gate gold set dev-empty has no articles")):
        assert tagger_main([*tiny.args(), "--gold-eval", str(path)]) == 2
        assert match in _error_line(capsys)
    assert tagger_main([*tiny.args(), "--gold-eval", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such file" in _error_line(capsys)
    assert tagger_main([*tiny.args(), "--report", str(tmp_path / "no-such-dir" / "r.json")]) == 2
    assert "--report" in _error_line(capsys)
    bad_keywords = write_jsonl(tmp_path / "kw.json", [{"topics": {"spaceflight": ["x"]}}])
    assert tagger_main([*tiny.args(), "--keywords", str(bad_keywords)]) == 2
    assert "spaceflight" in _error_line(capsys)
    assert [p.name for p in list_versions(tiny.root)] == ["1"]


# ------------------------------------------------------------------ 4. gate gold never trained on
def test_gate_gold_that_is_training_gold_is_refused(tiny: Tiny, tmp_path: Path, capsys, no_training) -> None:
    # The gate gold passed as training gold too ...
    assert tagger_main([*tiny.args(), "--gold", str(tiny.dev)]) == 2
    line = _error_line(capsys)
    assert "the gate gold must never be trained on" in line
    assert "300 of 300 articles of gate gold dev" in line, line
    # ... or a few of its articles arriving as labelled new data.
    new = write_jsonl(tmp_path / "new.jsonl",
                      [json.loads(line) for line in tiny.dev.read_text("utf-8").splitlines()[:7]])
    with pytest.raises(RetrainError, match="7 of 300 articles of gate gold dev"):
        retrain(**tiny.kwargs(), new=[new])
    assert [p.name for p in list_versions(tiny.root)] == ["1"]


# ------------------------------------------------------------------------------ 5. --new rows
@pytest.mark.parametrize("row, match", [
    ({"id": "e1", "topics": ["sanctions"]}, r"new\.jsonl:2: labelled article 'e1' has no text"),
    ({"id": "e1", "title": " ", "text": "", "topics": []}, r"new\.jsonl:2: labelled article 'e1' has no text"),
    ({"id": "e2", "raw": "عقوبات جديدة\nنص"},
     r"new\.jsonl:2: article 'e2' has no text .*'raw' page text is not read"),
    ({"id": "e3", "text": "عقوبات", "topic": ["sanctions"]},
     (r"new\.jsonl:2: unknown field 'topic': did you mean 'topics'\? \(without 'topics' the row would be read as "
      r"an unlabelled article\)")),
    ({"id": "e4", "text": "عقوبات", "Topics": ["sanctions"]}, r"new\.jsonl:2: unknown field 'Topics'"),
    ({"id": "e5", "text": "عقوبات", "tag": ["عقوبات"]},
     r"new\.jsonl:2: unknown field 'tag': did you mean 'tags'"),
    ({"id": "e6", "titel": "عقوبات", "text": "نص"}, r"unknown field 'titel': did you mean 'title'"),
])
def test_new_rows_a_typo_would_silently_change_are_errors(tmp_path: Path, row: dict, match: str) -> None:
    tx = default_taxonomy()
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": "g", "title": "t", "text": "نص", "topics": ["politics"]}])
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "c", "title": "t", "text": "نص"}])
    new = write_jsonl(tmp_path / "new.jsonl", [{"id": "ok", "text": "نص", "topics": ["economy"]}, row])
    with pytest.raises(InputError, match=match):
        assemble_training_data(gold=[gold], corpus=corpus, new=[new], corrections=[], taxonomy=tx)


def test_new_rows_with_other_fields_are_read_as_before(tmp_path: Path) -> None:
    tx = default_taxonomy()
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": "g", "title": "t", "text": "نص", "topics": ["politics"]}])
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "c", "title": "t", "text": "نص"}])
    new = write_jsonl(tmp_path / "new.jsonl", [
        {"id": "a", "title": "عنوان", "text": "", "url": "https://x", "author": "y", "topics": ["economy"]},
        {"id": "b", "text": "نص", "category": "news", "tags": ["عقوبات"], "labels": "site labels"},
        {"id": "g", "tags": ["سياسة"], "text": "نص", "topic_note": "not a typo of a field the row lacks",
         "topics": ["politics"]},
    ])
    data = assemble_training_data(gold=[gold], corpus=corpus, new=[new], corrections=[], taxonomy=tx)
    assert {a.id: a.topics for a in data.gold} == {"g": ("politics",), "a": ("economy",)}
    assert [a.id for a in data.unlabelled] == ["c", "b"]
    assert data.summary["new"] == {"labelled": 2, "replaced_gold": 1, "unlabelled": 1, "tagged": 2}


# ------------------------------------------------------------------- nothing new
def test_a_retrain_with_nothing_new_says_so_instead_of_training(tiny: Tiny, capsys, no_training) -> None:
    args = [a for a in tiny.args() if a != "--same-data"]
    assert tagger_main([*args, "--dry-run"]) == 2
    assert _error_line(capsys) == ("tagger retrain: error: nothing new to retrain on: give --new FILE, "
                                   "--corrections FILE or --from-review URL (or --same-data to retrain on the "
                                   "base data alone)")
    assert [p.name for p in list_versions(tiny.root)] == ["1"]


def test_the_data_summary_is_words_not_a_python_dict(tiny: Tiny, tmp_path: Path, capsys) -> None:
    new = tmp_path / "new.jsonl"
    rows = [json.loads(line) for line in tiny.gold.read_text("utf-8").splitlines()[:2]]
    new.write_text("".join(json.dumps(r | {"id": f"new-{i}"}, ensure_ascii=False) + "\n" for i, r in enumerate(rows)),
                   "utf-8")
    tagger_main([a for a in tiny.args() if a != "--same-data"] + ["--new", str(new), "--dry-run"])
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("training data:"))
    assert "new: 2 labelled, 0 replaced gold, 0 unlabelled" in line and "{" not in line, line


def test_retrain_from_review_trains_on_the_editors_decisions(tiny: Tiny, tmp_path: Path, capsys) -> None:
    """`tagger retrain --from-review URL`: the store's decisions are the new labelled data, without a
    file in between; an empty store is a one-line error, not an ungrounded retrain."""
    from tagger.review.importer import import_files
    from tagger.review.store import Store

    loaded = load_model(tiny.root)
    rows = [json.loads(line) for line in tiny.gold.read_text("utf-8").splitlines()[:8]]
    day = tmp_path / "day.jsonl"
    day.write_text("".join(json.dumps({"id": f"rev-{i}", "title": r.get("title", ""), "text": r["text"]},
                                      ensure_ascii=False) + "\n" for i, r in enumerate(rows)), "utf-8")
    db = str(tmp_path / "review.db")
    with Store(db, topics=loaded.model.topics, random_share=0.0) as store:
        empty_args = [a for a in tiny.args() if a != "--same-data"]
        assert tagger_main([*empty_args, "--from-review", db, "--dry-run"]) == 2
        assert "the review store has no decisions to train on" in _error_line(capsys)
        import_files(store, loaded, [str(day)])
        editor = store.user_by_token(store.add_user("ana"))
        decided = 0
        while (item := store.next_item(editor)) is not None:
            store.decide(editor, item.id, ["culture"])
            decided += 1
    report = tmp_path / "report.json"
    rc = tagger_main([*empty_args, "--from-review", db, "--dry-run", "--report", str(report)])
    err = capsys.readouterr().err
    assert rc in (0, 1), err
    assert f"from the review store: {decided} decided articles" in err and decided == 8
    assert json.loads(report.read_text("utf-8"))["data"]["new"]["labelled"] == decided
