"""Spark beyond local mode: the documented spark-submit recipe (docs/deploy.md) against a real Spark
standalone cluster on 127.0.0.1, one master and two workers started from the pyspark install.

The recipe ships tagger as a zip (``--py-files``) and runs a small launcher script; the driver reads
the model folder and broadcasts it to the executors. Nothing of this checkout is importable by the
driver or the executors except through that zip: both run a Python whose path has tagger's
dependencies (this venv's site-packages, added without its .pth files, so the editable install's
finder never runs) and no tagger (the test checks). The output must equal ``tagger tag``'s, line for
line and byte for byte, rejects included.

Like the other Spark tests this needs the spark extra and Java 17; it fails, never skips, without
them. About a minute: three JVMs start, then one application runs.
"""
from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagger.artifacts import LoadedModel
from tagger.batch import BatchConfig, run_batch

REPO = Path(__file__).resolve().parent.parent
#: The recipe of docs/deploy.md, with {placeholders} the test fills in (kept here as the one copy the
#: docs quote: tests/test_deploy.py checks the docs hold these lines).
ZIP_COMMAND = "zip -qr tagger.zip tagger -x '*__pycache__*'"
LAUNCHER = "import sys\nfrom tagger.cli import main\nsys.exit(main())\n"


def _spark_home() -> Path:
    try:
        import pyspark
    except ImportError as e:
        pytest.fail(f"{e.name} is not installed: the Spark tests need the spark extra (pip install -e '.[spark]')",
                    pytrace=False)
    return Path(pyspark.__file__).parent


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 90) -> re.Match:
    """The first match of ``pattern`` in a growing log file; fails if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text("utf-8", "replace")) if log.exists() else None
        if m:
            return m
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[1] if len(proc.args) > 1 else proc.args} exited ({proc.returncode}):\n"
                        f"{log.read_text('utf-8', 'replace')[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {pattern!r} in {log} after {timeout:.0f} s:\n{log.read_text('utf-8', 'replace')[-3000:]}")


def _spark_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK")) and k != "PYTHONPATH"}
    env |= {"SPARK_HOME": str(_spark_home()), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(tmp / "logs"),
            "SPARK_WORKER_DIR": str(tmp / "work"), "SPARK_NO_DAEMONIZE": "1"}
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Path]]]:
    """``spark://127.0.0.1:PORT`` of a standalone master (OS-assigned port) with two 1-core workers,
    and the workers' work folders (where their executors run)."""
    tmp = tmp_path_factory.mktemp("spark-cluster")
    env = _spark_env(tmp)
    spark_class = str(_spark_home() / "bin" / "spark-class")
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log = tmp / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([spark_class, *args], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp,
                                    start_new_session=True)
        procs.append(proc)
        return proc, log

    try:
        master, log = start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0",
                            "--webui-port", "0")
        url = _wait_for(log, r"Starting Spark master at (spark://127\.0\.0\.1:\d+)", master).group(1)
        workers = [start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                         "--port", "0", "--webui-port", "0", "--cores", "1", "--memory", "1g",
                         "--work-dir", str(tmp / f"work{i}")) for i in (1, 2)]
        for proc, wlog in workers:
            _wait_for(wlog, r"Successfully registered with master", proc)
        yield url, [tmp / "work1", tmp / "work2"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _python_without_tagger(where: Path) -> Path:
    """A Python with this venv's packages (numpy, pyarrow, ...) on its path but not tagger: a venv of
    the same base interpreter whose one .pth line adds the site-packages folder as a plain path entry
    (its own .pth files, the editable install's among them, are not run)."""
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(where)],
                   check=True)
    site = Path(subprocess.run([str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", "utf-8")
    return where / "bin" / "python"


def test_spark_submit_recipe_on_a_standalone_cluster_equals_tagger_tag(
    cluster: tuple[str, list[Path]], tmp_path: Path, shared_dir: Path, loaded: LoadedModel
) -> None:
    master, work_dirs = cluster
    python = _python_without_tagger(tmp_path / "pyenv")
    probe = subprocess.run([str(python), "-c", "import numpy, pyarrow, pyspark; import tagger"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert probe.returncode != 0 and "No module named 'tagger'" in probe.stderr, probe.stderr  # only the zip has it

    # The recipe, as documented: the package as a zip and a launcher beside it, in a folder of their own.
    job = tmp_path / "job"
    job.mkdir()
    subprocess.run(ZIP_COMMAND.replace("tagger.zip", str(job / "tagger.zip")), shell=True, check=True, cwd=REPO)
    (job / "tagger_main.py").write_text(LAUNCHER, "utf-8")

    # Input: 600 real articles spread over the lines, plus records the tagger must reject.
    with lzma.open(shared_dir / "corpus/ant-train.jsonl.xz", "rt", encoding="utf-8") as f:
        rows = [{"id": r["id"], "title": r["title"], "text": r["text"]} for r in (json.loads(line) for _, line in zip(range(600), f))]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines[7] = '{"id": "torn", "te'
    lines[300] = json.dumps({"id": "empty", "text": " "})
    lines[450] = '[1, 2]'
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", "utf-8")
    run_batch(BatchConfig(inputs=(str(src),), output=tmp_path / "cli.jsonl"), loaded)

    out = tmp_path / "out"
    submit = [
        str(_spark_home() / "bin" / "spark-submit"), "--master", master, "--deploy-mode", "client",
        "--py-files", "tagger.zip",
        "--conf", f"spark.pyspark.python={python}", "--conf", f"spark.pyspark.driver.python={python}",
        "--conf", "spark.executor.memory=1g", "--conf", "spark.ui.enabled=false",
        "tagger_main.py", "spark-tag", "--model", str(loaded.path), "--input", str(src), "--output", str(out),
        "--partitions", "4",
    ]
    env = _spark_env(tmp_path)
    p = subprocess.run(submit, cwd=job, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "tagged 597, rejected 3" in p.stdout + p.stderr  # spark-submit hands the driver's stderr to stdout

    def text_parts(folder: Path) -> list[str]:
        got = []
        for part in sorted(folder.glob("part-*.gz")):
            with gzip.open(part, "rt", encoding="utf-8") as f:
                got += f.read().splitlines()
        return got

    assert sorted(text_parts(out)) == sorted((tmp_path / "cli.jsonl").read_text("utf-8").splitlines())
    assert sorted(text_parts(Path(f"{out}_rejects"))) == sorted(
        (tmp_path / "cli.jsonl.rejects.jsonl").read_text("utf-8").splitlines())
    # The tagging ran in executors on both workers, which fetched the zip the driver shipped.
    for work in work_dirs:
        [executor] = work.glob("app-*/*/")
        assert (executor / "tagger.zip").is_file()
        assert "Finished task" in (executor / "stderr").read_text("utf-8", "replace")
