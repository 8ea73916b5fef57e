"""The CLI end to end, as a user runs it: real processes, the shipped model, the seed page."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tagger.artifacts import load_model, resolve_model_dir
from tagger.cli import COMMANDS
from tagger.paths import default_model_root


def tagger(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagger", *args], input=stdin, capture_output=True, timeout=300)


def test_seed_page_is_tagged_diplomacy_military_sanctions(shared_dir: Path) -> None:
    p = tagger("tag", str(shared_dir / "examples/seed-article.txt"))
    assert p.returncode == 0, p.stderr.decode()
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["id"] == "seed-article.txt"
    assert {t["topic"] for t in out["topics"]} == {"diplomacy", "military", "sanctions"}
    assert [t["score"] for t in out["topics"]] == sorted((t["score"] for t in out["topics"]), reverse=True)
    assert "سياسة" in out["dropped_tags"]  # the navigation noise is reported as dropped, not used
    assert out["model_version"].startswith("arabic-news-topics/")


def test_explain_and_stdin_jsonl_in_input_order(shared_dir: Path) -> None:
    seed = (shared_dir / "examples/seed-article.txt").read_text("utf-8")
    rows = [
        {"id": "s1", "raw": seed},
        {"id": "s2", "title": "المنتخب يفوز بكأس آسيا", "text": "فاز المنتخب الوطني في المباراة النهائية لكرة القدم وتوج بالكأس."},
    ]
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    p = tagger("tag", "-", "--explain", stdin=data)
    assert p.returncode == 0, p.stderr.decode()
    out = [json.loads(l) for l in p.stdout.decode().splitlines()]
    assert [o["id"] for o in out] == ["s1", "s2"]
    assert out[1]["topics"][0]["topic"] == "sports"
    assert all(t["evidence"] for o in out for t in o["topics"])


def test_info_prints_the_manifest() -> None:
    p = tagger("info")
    assert p.returncode == 0
    m = json.loads(p.stdout)
    assert m["name"] == "arabic-news-topics" and len(m["topics"]) == 12 and len(m["sha256"]) == 64


def test_evaluate_matches_the_manifest_and_reports_keywords(shared_dir: Path) -> None:
    p = tagger("evaluate", "--gold", str(shared_dir / "gold/dev.jsonl"), "--json")
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    shipped = load_model(default_model_root()).manifest
    assert out["model_version"] == f"{shipped['name']}/{shipped['version']}"
    assert out["model"]["micro_f1"] == pytest.approx(shipped["metrics"]["dev"]["micro_f1"], abs=1e-4)
    assert out["keyword_rules"]["micro_f1"] < out["model"]["micro_f1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tag", "/no/such/file.txt"], "No such file"),
        (["evaluate", "--gold", "/no/such/gold.jsonl"], "no such file"),
        (["train", "--corpus", "/no/such/corpus.jsonl.xz", "--no-publish"], "no such file"),
        (["tag", "-", "--threshold", "3"], "threshold must be"),
        (["info", "--model", "/no/such/model"], "no model found"),
    ],
)
def test_errors_are_one_clear_line_and_exit_2(args: list[str], message: str) -> None:
    p = tagger(*args, stdin=b"")
    err = p.stderr.decode().strip()
    assert p.returncode == 2
    assert len(err.splitlines()) == 1 and message in err, err


def test_invalid_utf8_and_empty_input_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xd8\xb9\xff\xfe broken")
    p = tagger("tag", str(bad))
    assert p.returncode == 2 and b"invalid UTF-8" in p.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n", "utf-8")
    p = tagger("tag", str(empty))
    assert p.returncode == 2 and b"no text to tag" in p.stderr


def test_corrupt_model_is_refused_with_a_clear_message(tmp_path: Path, shared_dir: Path) -> None:
    src = resolve_model_dir(default_model_root())
    dst = tmp_path / src.parent.name / src.name
    shutil.copytree(src, dst)
    with open(dst / "model.npz", "ab") as f:
        f.write(b"tampered")
    p = tagger("tag", "--model", str(dst), str(shared_dir / "examples/seed-article.txt"))
    assert p.returncode == 2 and b"sha256 mismatch" in p.stderr and not p.stdout


def test_evaluate_refuses_bad_gold_and_protects_predictions(tmp_path: Path, shared_dir: Path) -> None:
    dev_lines = (shared_dir / "gold/dev.jsonl").read_bytes().splitlines(keepends=True)[:3]
    first = json.loads(dev_lines[0])
    cases = {
        "empty.jsonl": (b"".join(dev_lines) + json.dumps({"id": "e1", "title": "", "text": "", "topics": []}).encode(),
                        "article 'e1' has no text to score"),
        "dup.jsonl": (b"".join(dev_lines) + dev_lines[0], f"duplicate id {first['id']!r} (articles 1 and 4)"),
        "big.jsonl": (b'{"id": "x", "n": ' + b"1" * 5000 + b"}\n", "big.jsonl:1: invalid JSON (Exceeds the limit"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        p = tagger("evaluate", "--gold", str(tmp_path / name))
        err = p.stderr.decode().strip()
        assert p.returncode == 2 and len(err.splitlines()) == 1 and message in err, (name, err)
    p = tagger("evaluate", "--gold", str(tmp_path))
    assert p.returncode == 2 and f"{tmp_path}: not a file" in p.stderr.decode()

    gold = tmp_path / "gold.jsonl"
    gold.write_bytes(b"\xef\xbb\xbf" + b"".join(dev_lines))  # a byte-order mark is not part of the first line
    pred = tmp_path / "pred.jsonl"
    pred.write_text("keep me\n", "utf-8")
    p = tagger("evaluate", "--gold", str(gold), "--predictions", str(pred))
    assert p.returncode == 2 and "use --force" in p.stderr.decode() and pred.read_text("utf-8") == "keep me\n"
    p = tagger("evaluate", "--gold", str(gold), "--predictions", str(pred), "--force", "--no-keywords")
    assert p.returncode == 0, p.stderr.decode()
    assert [json.loads(line)["id"] for line in pred.read_text("utf-8").splitlines()] == [
        json.loads(line)["id"] for line in dev_lines]
    p = tagger("evaluate", "--gold", str(gold), "--predictions", str(tmp_path / "no" / "dir" / "p.jsonl"))
    assert p.returncode == 2 and "no such directory" in p.stderr.decode()


def test_serve_with_its_metrics_port_taken_is_one_clear_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            p = tagger("serve", "--port", "0", "--workers", workers, "--metrics-port", str(port))
            err = p.stderr.decode().strip()
            assert p.returncode == 2 and err == (
                # Metrics listen where gRPC does (--host, default [::]) unless --metrics-host says otherwise.
                f"tagger serve: error: cannot serve metrics on [::]:{port} (--metrics-port): Address already in use"
            ), err


def test_train_checks_taxonomy_and_dev_before_any_training(tmp_path: Path, shared_dir: Path) -> None:
    """A bad --taxonomy or --dev is one line and exit 2 before the corpus is even read (training on
    the real corpus would take a minute and print its progress first)."""
    bad_dev = tmp_path / "dev.jsonl"
    bad_dev.write_text(json.dumps({"id": "d", "title": "t", "text": "نص", "topics": ["diplomcy"]}) + "\n", "utf-8")
    empty_dev = tmp_path / "empty.jsonl"
    empty_dev.write_text("", "utf-8")
    for args, message in [
        (["--taxonomy", str(tmp_path / "missing.json")], "cannot read the taxonomy (No such file or directory)"),
        (["--taxonomy", str(tmp_path)], "cannot read the taxonomy (Is a directory)"),
        (["--dev", str(bad_dev)], "unknown topic id 'diplomcy' (did you mean 'diplomacy'?)"),
        (["--dev", str(empty_dev)], "no articles to report on (pass --dev none to skip the report)"),
    ]:
        p = tagger("train", "--no-publish", *args)
        err = p.stderr.decode().strip()
        assert p.returncode == 2 and len(err.splitlines()) == 1 and message in err, (args, err)
        assert b"features:" not in p.stdout and b"read " not in p.stdout, p.stdout  # nothing was trained


# --------------------------------------------------------------- usage errors are one line (issue 14)
def test_the_example_usage_error_is_exactly_one_line() -> None:
    p = tagger("tag", "--threshold", "abc", "x")
    assert p.returncode == 2 and not p.stdout
    assert p.stderr.decode() == "tagger tag: error: argument --threshold: invalid float value: 'abc'\n"


@pytest.mark.parametrize("argv, message", [
    # Every command, whatever it objects to first (an unknown option, or its required arguments missing).
    *[([name, "--no-such-option"], f"tagger {name}: error: ") for name in COMMANDS],
    (["tag", "x", "--no-such-option"], "tagger tag: error: unrecognized arguments: --no-such-option"),
    (["spark-tag", "-i", "x", "-o", "y", "--no-such-option"],
     "tagger spark-tag: error: unrecognized arguments: --no-such-option"),
    (["tag", "--max-chars", "many"], "tagger tag: error: argument --max-chars: invalid int value: 'many'"),
    (["tag", "--format", "xml"], "tagger tag: error: argument --format: invalid choice: 'xml'"),
    (["evaluate", "--gold"], "tagger evaluate: error: argument --gold: expected one argument"),
    (["serve", "--port", "http"], "tagger serve: error: argument --port: invalid int value: 'http'"),
    (["spark-tag", "--input", "x"], "tagger spark-tag: error: the following arguments are required: --output/-o"),
    (["no-such-command"], "tagger: error: argument COMMAND: invalid choice: 'no-such-command'"),
])
def test_usage_errors_of_every_command_are_one_line(argv: list[str], message: str, capsys) -> None:
    """argparse errors are one line on stderr and exit code 2, as every other CLI error, for every
    command (in-process: the parser is the same one the console script builds)."""
    from tagger.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith(message), err
    assert "usage:" not in err


def test_help_still_shows_the_usage(capsys) -> None:
    from tagger.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["tag", "--help"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("usage: tagger tag")


@pytest.mark.parametrize("command", ["tag", "spark-tag"])
def test_top_k_zero_is_refused(command: str, capsys) -> None:
    """``--top-k 0`` used to return no topics at all, silently: it is refused, before any model loads."""
    from tagger.cli import main

    with pytest.raises(SystemExit) as stop:
        main([command, "--top-k", "0", *(["x"] if command == "tag" else ["-i", "x", "-o", "y"])])
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"tagger {command}: error: argument --top-k: must be at least 1, got 0\n"


def test_top_k_one_keeps_the_best_topic(shared_dir: Path) -> None:
    p = tagger("tag", "--top-k", "1", str(shared_dir / "examples/seed-article.txt"))
    assert p.returncode == 0, p.stderr.decode()
    assert [t["topic"] for t in json.loads(p.stdout)["topics"]] == ["diplomacy"]


def test_a_json_error_says_at_once(tmp_path: Path) -> None:
    """json's "Invalid control character at" message is not followed by a second "at"."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": "a", "text": "x\x01y"}\n')
    p = tagger("tag", str(src))
    assert p.returncode == 2
    assert p.stderr.decode() == f"tagger tag: error: {src}:1: invalid JSON (Invalid control character at column 23)\n"
    out = tmp_path / "out.jsonl"
    p = tagger("tag", "-i", str(src), "-o", str(out), "--quiet")
    assert p.returncode == 0, p.stderr.decode()
    [reject] = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text("utf-8").splitlines()]
    assert reject["detail"] == "invalid JSON (Invalid control character at column 23)"


def test_missing_training_data_says_where_the_default_comes_from(tmp_path: Path) -> None:
    env = {**os.environ, "TAGGER_SHARED": str(tmp_path / "nowhere")}
    for command in (["evaluate"], ["train", "--no-publish"], ["retrain", "--same-data", "--dry-run"]):
        p = subprocess.run([sys.executable, "-m", "tagger", *command], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
        err = p.stderr.strip()
        assert p.returncode == 2 and len(err.splitlines()) == 1, (command, err)
        assert f"{tmp_path / 'nowhere'}" in err and "set TAGGER_SHARED, or pass the path" in err, err
    # Tagging needs no training data at all.
    page = tmp_path / "page.txt"
    page.write_text("فرضت الولايات المتحدة عقوبات جديدة على كوريا الشمالية", "utf-8")
    p = subprocess.run([sys.executable, "-m", "tagger", "tag", str(page)], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
