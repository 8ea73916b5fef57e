"""`tagger review add-user / import / export` as a user runs them: exit codes, messages, files."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from tagger.cli import main
from tagger.review.store import Store


def run(argv: list[str], capsys: pytest.CaptureFixture, stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_add_user_prints_the_token_once(tmp_path: Path, capsys, monkeypatch) -> None:
    db = str(tmp_path / "r.db")
    code, out, err = run(["review", "add-user", "amal", "--db", db, "--password-stdin"], capsys, "pw-1\n", monkeypatch)
    assert code == 0 and "shown this once" in err
    token = out.strip()
    with Store(db) as store:
        assert store.user_by_token(token).name == "amal"
        assert store.check_password("amal", "pw-1") is not None
    code, _, err = run(["review", "add-user", "amal", "--db", db, "--password-stdin"], capsys, "pw-2\n", monkeypatch)
    assert code == 2 and "user 'amal' already exists" in err
    code, _, err = run(["review", "add-user", "bob", "--db", db, "--password-stdin"], capsys, "\n", monkeypatch)
    assert code == 2 and "empty" in err


def test_import_reports_rejects_and_export_writes_rows(tmp_path: Path, capsys, loaded) -> None:
    db = str(tmp_path / "r.db")
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "title": "قمة عربية في الرياض", "text": "انعقدت القمة العربية بحضور وزراء الخارجية"}\n'
                   '{"id": "b", "text": 7}\n', encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    code, _, err = run(["review", "import", "--db", db, str(src), "--rejects", str(rejects)], capsys)
    assert code == 1
    assert f"rejected {src}:2: field 'text' must be a string" in err
    assert "read 2: added 1, already queued 0, rejected 1" in err
    assert [json.loads(line)["reason"] for line in rejects.read_text().splitlines()] == ["invalid_field"]

    with Store(db, topics=loaded.model.topics, random_share=0.0) as store:
        with store.engine.begin() as conn:  # keep "a" out of the random slice so it is exported
            from sqlalchemy import update

            from tagger.review.schema import items
            conn.execute(update(items).values(random_slice=False))
        ed = store.user_by_token(store.add_user("ed"))
        store.decide(ed, store.next_item(ed).id, ["diplomacy"])
    out = tmp_path / "export.jsonl"
    code, _, err = run(["review", "export", "--db", db, "--output", str(out)], capsys)
    assert code == 0 and "wrote 1 reviewed articles" in err
    [row] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (row["id"], row["topics"], row["title"]) == ("a", ["diplomacy"], "قمة عربية في الرياض")
    code, _, err = run(["review", "export", "--db", db, "--output", str(out), "--since", "2999-01-01"], capsys)
    assert code == 0 and out.read_text() == ""
    code, _, err = run(["review", "export", "--db", db, "--output", str(out), "--since", "yesterday"], capsys)
    assert code == 2 and "not an ISO date" in err


def test_review_needs_a_subcommand_and_a_database_it_can_open(tmp_path: Path, capsys) -> None:
    code, _, err = run(["review"], capsys)
    assert code == 2 and "give a subcommand" in err
    code, _, err = run(["review", "export", "--db", "mysql://x/y", "--output", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and "unsupported database 'mysql'" in err
