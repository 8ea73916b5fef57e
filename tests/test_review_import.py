"""Import into the review queue (articles tagged here; batch output joined to its input) and export of
decisions as `tagger retrain --new` rows, read back by the training pipeline's own reader."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from review_fixtures import db_url, pg_server  # noqa: F401  (fixtures)
from tagger.training.assemble import _check_new_row, assemble_training_data
from tagger.training.data import read_articles

from tagger.batch import BatchConfig, run_batch
from tagger.review.export import export_rows, write_jsonl
from tagger.review.importer import import_files
from tagger.review.queue import RANDOM_FRACTION, in_random_slice, needs_double_review, unit_draws
from tagger.review.store import Store


@pytest.fixture
def day(shared_dir: Path, tmp_path: Path) -> Path:
    """60 dev articles without their labels, as a day of incoming articles."""
    out = tmp_path / "day.jsonl"
    with open(shared_dir / "gold/dev.jsonl", encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        for _, line in zip(range(60), f):
            row = json.loads(line)
            row.pop("topics")
            row["tags"] = ["عقوبات"] if len(row["id"]) % 3 == 0 else []
            g.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


def test_random_slice_and_double_review_are_fixed_by_the_id() -> None:
    ids = [f"doc-{i}" for i in range(20000)]
    share = sum(map(in_random_slice, ids)) / len(ids)
    assert abs(share - RANDOM_FRACTION) < 0.01
    assert 0.04 < sum(map(needs_double_review, ids)) / len(ids) < 0.06
    assert unit_draws("doc-1") == unit_draws("doc-1") and len(set(unit_draws("doc-1"))) == 3
    # The two samples are drawn independently: about 10% of the double-review sample is in the random slice.
    double = [i for i in ids if needs_double_review(i)]
    assert abs(sum(map(in_random_slice, double)) / len(double) - RANDOM_FRACTION) < 0.03


def test_import_articles_tags_them_and_orders_the_queue(db_url: str, loaded, day: Path) -> None:  # noqa: F811
    with Store(db_url, topics=loaded.model.topics, random_share=0.0) as store:
        stats = import_files(store, loaded, [str(day)])
        assert (stats.read, stats.added, stats.rejected) == (60, 60, 0)
        again = import_files(store, loaded, [str(day)])
        assert (again.added, again.duplicates) == (0, 60)  # nothing queued twice
        editor = store.user_by_token(store.add_user("ana"))
        first = store.next_item(editor)
        assert not first.random_slice
        with store.engine.connect() as conn:
            rows = conn.execute(store_items_query()).all()
        active = [r for r in rows if not r.random_slice]
        assert first.doc_id == min(active, key=lambda r: (r.priority, r.id)).doc_id
        by_id = {r.doc_id: r for r in rows}
        # The priority is the uncertainty margin less the bonuses of the other two signals.
        for r in active:
            s = r.signals
            assert r.priority == pytest.approx(s["margin"] - 1.0 * s["tag_disagrees"] - 0.5 * s["unknown_outlet"],
                                               abs=1e-4)
        assert all(by_id[r.doc_id].random_slice == in_random_slice(r.doc_id) for r in rows)
        # Dev articles come from outlets outside the model's gold outlets: the signal sees that.
        assert any(r.signals["unknown_outlet"] for r in active)
        item = store.get_item(first.id)
        assert item.title and item.text and item.model_version == loaded.version
        assert set(item.evidence) == {p["topic"] for p in item.predicted}


def store_items_query():
    from sqlalchemy import select

    from tagger.review.schema import items
    return select(items.c.doc_id, items.c.id, items.c.priority, items.c.signals, items.c.random_slice)


def test_batch_output_is_joined_to_its_input_by_id(tmp_path: Path, loaded, day: Path) -> None:
    out = tmp_path / "day.tags.jsonl"
    run_batch(BatchConfig(inputs=(str(day),), output=out), loaded)
    with Store(str(tmp_path / "r.db"), topics=loaded.model.topics) as store:
        alone = import_files(store, loaded, [str(out)])
        assert (alone.added, alone.rejected) == (0, 60)
        assert "give the batch's input files with --join" in alone.rejects[0].detail
        assert alone.rejects[0].where() == f"{out}:1"
        stats = import_files(store, loaded, [str(out)], join=[str(day)])
        assert (stats.added, stats.rejected) == (60, 0)
        first_line = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
        source = json.loads(day.read_text(encoding="utf-8").splitlines()[0])
        item = store.get_item(store.item_id(first_line["id"]))
        assert item.title == source["title"] and item.outlet == source["outlet"]
        assert item.predicted == [{"topic": t["topic"], "score": t["score"]} for t in first_line["topics"]]
        assert item.model_version == first_line["model_version"]


def test_batch_output_with_kept_articles_is_imported_from_the_one_file(db_url: str, loaded, day: Path,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    """`tagger tag --keep title,text,url,outlet` output needs no --join: each item has the article kept in its
    line, cleaned as the batch cleaned it, and the batch's prediction."""
    from tagger.readers import Fields, to_document

    out = tmp_path / "day.kept.jsonl"
    run_batch(BatchConfig(inputs=(str(day),), output=out, keep=("title", "text", "url", "outlet")), loaded)
    lines = out.read_text(encoding="utf-8").splitlines()
    # One line whose kept text is blank: not an article, rejected with the reader's reason; none dropped.
    broken = json.loads(lines[-1]) | {"title": " ", "text": ""}
    out.write_text("\n".join(lines[:-1] + [json.dumps(broken, ensure_ascii=False)]) + "\n", encoding="utf-8")
    with Store(db_url, topics=loaded.model.topics) as store:
        stats = import_files(store, loaded, [str(out)])
        assert (stats.read, stats.added, stats.rejected) == (60, 59, 1)
        assert stats.rejects[0].reason == "empty_text" and stats.rejects[0].where() == f"{out}:60"
        assert stats.rejects[0].detail.startswith("batch output line: ")
        first = json.loads(lines[0])
        source = json.loads(day.read_text(encoding="utf-8").splitlines()[0])
        doc = to_document("item", "x", 1, source, "", Fields())
        item = store.get_item(store.item_id(first["id"]))
        assert (item.title, item.text) == (doc.title, doc.body) and item.text
        assert item.outlet == source["outlet"] and item.url == source["url"]
        assert item.predicted == [{"topic": t["topic"], "score": t["score"]} for t in first["topics"]]
        assert item.model_version == first["model_version"]
        again = import_files(store, loaded, [str(out)])
        assert (again.added, again.duplicates, again.rejected) == (0, 59, 1)


def test_batch_output_without_text_names_both_ways_to_give_it(tmp_path: Path, loaded, day: Path) -> None:
    out = tmp_path / "day.tags.jsonl"
    run_batch(BatchConfig(inputs=(str(day),), output=out), loaded)
    with Store(str(tmp_path / "r.db"), topics=loaded.model.topics) as store:
        stats = import_files(store, loaded, [str(out)])
    assert (stats.added, stats.rejected) == (0, 60)
    assert {r.reason for r in stats.rejects} == {"missing_text"}
    assert "`tagger tag --keep title,text`" in stats.rejects[0].detail


def test_bad_records_are_rejected_with_a_reason_not_dropped(tmp_path: Path, loaded) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "title": "قمة عربية", "text": "انعقدت القمة العربية في الرياض"}\n'
                   '{"id": "n", "text": 42}\nnot json\n'
                   '{"id": "ok", "title": "x", "text": "again"}\n'
                   '{"id": "b", "topics": [], "scores": {"weather": 0.5}, "model_version": "m/1"}\n'
                   '{"id": "c", "topics": [], "scores": {"sports": 0.5}, "model_version": "m/1", "dropped_tags": [1]}\n',
                   encoding="utf-8")
    with Store(str(tmp_path / "r.db"), topics=loaded.model.topics) as store:
        stats = import_files(store, loaded, [str(bad)])
    assert (stats.read, stats.added, stats.rejected) == (6, 1, 5)
    assert [r.reason for r in stats.rejects] == ["invalid_field", "invalid_json", "invalid_document", "invalid_field",
                                                 "invalid_field"]
    assert "unknown topic(s) ['weather']" in stats.rejects[-2].detail
    assert "'dropped_tags' must be a list of strings" in stats.rejects[-1].detail


def test_export_is_what_retrain_new_reads(tmp_path: Path, loaded, day: Path, shared_dir: Path) -> None:
    with Store(str(tmp_path / "r.db"), topics=loaded.model.topics, random_share=0.0) as store:
        import_files(store, loaded, [str(day)])
        ana = store.user_by_token(store.add_user("ana"))
        bob = store.user_by_token(store.add_user("bob"))
        decided: dict[str, list[str]] = {}
        for k in range(12):
            item = store.next_item(ana)
            topics = item.predicted_topics if k % 2 else ["culture"]
            store.decide(ana, item.id, topics)
            decided[item.doc_id] = [t for t in loaded.model.topics if t in topics]  # stored in taxonomy order
        item = store.next_item(ana)
        store.skip(ana, item.id)  # a skip is not a label
        # The random slice is never exported, whoever decides it.
        with store.engine.begin() as conn:
            from sqlalchemy import select

            from tagger.review.schema import items
            random_id = conn.execute(select(items.c.id).where(items.c.random_slice).limit(1)).scalar()
        assert random_id is not None
        store.decide(bob, random_id, [])
        rows = export_rows(store)
    assert {r["id"]: r["topics"] for r in rows} == decided
    path = tmp_path / "export.jsonl"
    write_jsonl(rows, path)
    articles = list(read_articles(path, loaded.taxonomy, check=_check_new_row))
    assert {a.id: list(a.topics) for a in articles} == decided
    assert all(a.title and a.body and a.outlet for a in articles)
    # And the whole assembly `tagger retrain --new` runs accepts it as labelled new data.
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(day.read_text(encoding="utf-8").splitlines()[-1] + "\n", encoding="utf-8")
    gold = tmp_path / "gold.jsonl"
    with open(shared_dir / "gold/dev.jsonl", encoding="utf-8") as f:
        gold.write_text("".join(f.readlines()[-5:]), encoding="utf-8")
    data = assemble_training_data(gold=[gold], corpus=corpus, taxonomy=loaded.taxonomy, new=[path])
    assert data.summary["new"]["labelled"] == 12


def test_worker_processes_import_exactly_what_one_process_does(tmp_path: Path, loaded, day: Path) -> None:
    """workers=2 (forked processes build the rows, the main one writes) gives the same items, counts and
    rejects, in the same order, as inline — with chunks small enough that duplicates and bad lines fall
    in different chunks. Run in a fresh process, as the CLI runs it: workers are forked only from a
    process with no other threads, which a pytest process full of earlier servers' threads is not."""
    import subprocess
    import sys

    out = tmp_path / "day.kept.jsonl"
    run_batch(BatchConfig(inputs=(str(day),), output=out, keep=("title", "text", "outlet")), loaded)
    lines = out.read_text(encoding="utf-8").splitlines()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(lines[:30] + ["not json", lines[3], '{"id": "x", "text": 42}'] + lines[30:]
                               + [lines[40]]) + "\n", encoding="utf-8")
    script = f"""
import json, sys
from sqlalchemy import select
from tagger.artifacts import load_model
from tagger.review.importer import import_files
from tagger.review.schema import items
from tagger.review.store import Store
loaded = load_model({str(loaded.path)!r})
for workers in (0, 2):
    with Store({str(tmp_path)!r} + f"/r{{workers}}.db", topics=loaded.model.topics) as store:
        stats = import_files(store, loaded, [{str(mixed)!r}], batch_size=7, workers=workers)
        with store.engine.connect() as conn:
            rows = conn.execute(select(items.c.doc_id, items.c.title, items.c.text, items.c.priority,
                                       items.c.predicted, items.c.signals).order_by(items.c.id)).all()
    print(json.dumps([stats.workers, stats.read, stats.added, stats.rejected, [r.to_json() for r in stats.rejects],
                      [list(r) for r in rows]], ensure_ascii=False))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    inline, forked = (json.loads(line) for line in run.stdout.splitlines())
    assert (inline[0], forked[0]) == (0, 2)  # the pool was really used
    assert inline[1:] == forked[1:]
    read, added, rejected, rejects, rows = inline[1:]
    assert (read, added, rejected, len(rows)) == (64, 60, 4, 60)
    assert [(r["line"], r["reason"]) for r in rejects] == [(31, "invalid_json"), (32, "invalid_document"),
                                                           (33, "invalid_field"), (64, "invalid_document")]
