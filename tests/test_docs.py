"""The examples in README.md and docs/*.md work, checked by the language of their code fence.

- ``python``: run as a script with the installed tagger, in a fresh folder with ``../shared`` beside
  it. ``TAGGER_SERVER`` holds the address of a real ``tagger serve`` on 127.0.0.1 (started once, on an
  OS-assigned port) for the blocks that read it.
- ``console``: each ``$ `` line is a shell command, run in order in one fresh folder (``../shared``
  beside it, the installed ``tagger`` first on PATH). The lines after a command, up to the next ``$ ``,
  are its expected output (stdout, then stderr): ``...`` matches anything and a run of whitespace
  matches any whitespace, so a JSON line may be shown wrapped. A command must exit 0 unless its
  expected output shows an ``error:``; then it must fail.
- ``bash`` / ``sh``: every ``tagger …`` command (continued lines joined, comments, environment
  assignments, pipes and redirections handled) must parse with the real command-line parser, so a
  flag or command the CLI does not have cannot stay in the docs. They are not run: most need a
  cluster, a long training run or files the reader brings.
- ``text`` (and ``json``): shown, not run. A fence with no language or an unknown one is an error.

Relative links between the pages must point at files that exist, and ``#anchors`` at headings that do.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, find_shared

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE_LANGUAGES = {"python", "console", "bash", "sh", "text", "json"}
README_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/tagger tag ../shared/examples/seed-article.txt",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test,train,spark]' && .venv/bin/python -m pytest -q",
)
BIN = Path(sys.executable).parent  # the venv the tests run in: its `tagger` is the installed CLI
COMMAND_TIMEOUT = 600  # seconds; the Spark example starts a local session


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page (``` fences at the start of a line)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"```([\w+-]*)\s*", lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{page.relative_to(REPO)}:{start + 1}: code fence never closed"
        found.append(Block(page, start + 1, m.group(1), "\n".join(body) + "\n"))
        i += 1
    return found


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]


def of(*languages: str) -> list:
    return [pytest.param(b, id=b.id) for b in ALL_BLOCKS if b.language in languages]


# ------------------------------------------------------------------ the places examples run in
@pytest.fixture
def workdir(tmp_path: Path, shared_dir: Path) -> Path:
    """An empty folder with the shared data beside it as ``../shared``, as in a checkout."""
    (tmp_path / "shared").symlink_to(shared_dir, target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    return work


def example_env(shared_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TAGGER_MODEL", "TAGGER_MODELS_DIR")}
    env.update(TAGGER_SHARED=str(shared_dir), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


@pytest.fixture(scope="module")
def doc_server():
    """One real ``tagger serve`` on 127.0.0.1, port chosen by the OS, for the client examples."""
    from serve_process import ServeProcess

    server = ServeProcess("--port", "0", "--workers", "1", "--metrics-port", "0")
    try:
        server.wait_ready()
        yield server.target
    finally:
        server.__exit__(None, None, None)


# ------------------------------------------------------------------ python
@pytest.mark.parametrize("block", of("python"))
def test_python_example_runs(block: Block, workdir: Path, shared_dir: Path, request: pytest.FixtureRequest) -> None:
    extra = {"TAGGER_SERVER": request.getfixturevalue("doc_server")} if "TAGGER_SERVER" in block.code else {}
    script = workdir.parent / "example.py"
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=workdir, env=example_env(shared_dir, **extra),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"


# ------------------------------------------------------------------ console
def console_steps(code: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"console block output before any '$ ' command: {line!r}"
            steps[-1][1].append(line)
    return [(cmd, "\n".join(out).strip()) for cmd, out in steps]


def output_pattern(expected: str) -> re.Pattern[str]:
    """``expected`` as a regex: ``...`` matches anything, whitespace runs match any whitespace."""
    pieces = []
    for i, literal in enumerate(expected.split("...")):
        if i:
            pieces.append(".*?")
        pieces.append(r"\s*".join(re.escape(word) for word in literal.split()))
    return re.compile(r"\s*" + r"\s*".join(p for p in pieces if p) + r"\s*", re.DOTALL)


def test_output_pattern_is_strict_where_it_should_be() -> None:
    assert output_pattern('{"a": 1,\n "b": ...}').fullmatch('{"a": 1, "b": [2, 3]}')
    assert not output_pattern('{"a": 1, "b": 2}').fullmatch('{"a": 1, "b": 3}')
    assert not output_pattern("read 5, tagged 3").fullmatch("read 5, tagged 3, rejected 2")
    assert output_pattern("").fullmatch("\n")


@pytest.mark.parametrize("block", of("console"))
def test_console_example_prints_what_it_shows(block: Block, workdir: Path, shared_dir: Path) -> None:
    steps = console_steps(block.code)
    assert steps, f"{block.id}: a console block with no '$ ' command"
    env = example_env(shared_dir)
    for command, expected in steps:
        done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
        where = f"{block.id}: `{command}` (exit {done.returncode})\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
        if "error:" in expected:
            assert done.returncode != 0, f"expected to fail: {where}"
        else:
            assert done.returncode == 0, where
        assert output_pattern(expected).fullmatch(done.stdout + done.stderr), f"output differs from\n{expected}\n{where}"


# ------------------------------------------------------------------ bash / sh
def tagger_commands(code: str) -> list[list[str]]:
    """The argument lists of every ``tagger`` command in a shell block."""
    code = code.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in code.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        tokens = list(lexer)
        i = 0
        while i <= len(tokens):
            token = tokens[i] if i < len(tokens) else ";"
            if token in ("|", "||", "&&", ";", "&"):
                words = list(current)
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                    words.pop(0)  # VAR=value before the command
                if words and Path(words[0]).name == "tagger":
                    commands.append(words[1:])
                current = []
            elif token in (">", ">>", "<", "2>", "&>"):
                i += 1  # the redirection's target is not an argument
            else:
                current.append(token)
            i += 1
    return commands


def test_tagger_commands_are_found_in_shell_lines() -> None:
    code = "TAGGER_WORKERS=4 tagger serve  # comment --nope\ncat a | tagger tag - > out.jsonl\n" \
           "tagger retrain --new a.jsonl \\\n    --dry-run\n.venv/bin/tagger info && echo done\n"
    assert tagger_commands(code) == [["serve"], ["tag", "-"], ["retrain", "--new", "a.jsonl", "--dry-run"], ["info"]]


def parse_error(argv: list[str]) -> str | None:
    """None if ``tagger ARGV`` parses; else what the parser said."""
    from tagger.cli import COMMANDS, build_parser

    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            parser.parse_args(argv)
    except SystemExit as e:
        return None if e.code in (0, None) else err.getvalue().strip() or f"exit {e.code}"
    except Exception as e:  # a parser that raises its own error type instead of exiting
        return f"{type(e).__name__}: {e}"
    return None


SHELL_BLOCKS = of("bash", "sh")


@pytest.mark.parametrize("block", SHELL_BLOCKS)
def test_shell_example_tagger_commands_parse(block: Block) -> None:
    bad = {" ".join(argv): err for argv in tagger_commands(block.code)
           if (err := parse_error(argv))}
    assert not bad, f"{block.id}: commands the CLI does not accept:\n" + "\n".join(f"tagger {c}\n  {e}" for c, e in bad.items())


def test_parse_check_rejects_a_flag_the_cli_lacks() -> None:
    assert parse_error(["tag", "--no-such-flag", "x"])
    assert parse_error(["no-such-command"])
    assert parse_error(["tag", "--top-k", "2", "page.txt"]) is None


def test_shell_examples_show_real_commands() -> None:
    counted = sum(len(tagger_commands(p.values[0].code)) for p in SHELL_BLOCKS)
    assert counted >= 30, f"only {counted} tagger commands found in bash blocks: is the extraction broken?"


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in ALL_BLOCKS])
def test_fence_language_is_known(block: Block) -> None:
    assert block.language in FENCE_LANGUAGES, (
        f"{block.id}: fence language {block.language!r}; use one of {sorted(FENCE_LANGUAGES)} "
        "(`text` for what is not run)"
    )


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    first_shell = [b.code.strip() for b in blocks(REPO / "README.md") if b.language in ("bash", "sh")][:2]
    assert tuple(first_shell) == README_COMMANDS
    # CI runs the README's test command itself, so the README cannot promise what CI does not run.
    assert README_COMMANDS[1] in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    fenced = {line for b in blocks(page) for line in range(b.line, b.line + b.code.count("\n") + 2)}
    lines = page.read_text(encoding="utf-8").splitlines()
    return {slug(line.lstrip("#")) for n, line in enumerate(lines, 1) if line.startswith("#") and n not in fenced}


def test_slug_matches_github() -> None:
    assert slug("`tagger tag --output`: batch mode") == "tagger-tag---output-batch-mode"
    assert slug("Walk-through on the real data") == "walk-through-on-the-real-data"


@pytest.mark.parametrize("page", [pytest.param(p, id=str(p.relative_to(REPO))) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for b in blocks(page):  # links inside code are not links
        text = text.replace(b.code, "")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_example_block_is_collected() -> None:
    # Guards the collector: the pages hold runnable examples of each kind.
    kinds = {b.language for b in ALL_BLOCKS}
    assert {"python", "console", "bash"} <= kinds
    assert find_shared().is_dir()
