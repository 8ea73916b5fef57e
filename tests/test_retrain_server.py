"""A promoted version reaches a running `tagger serve` (hot reload) with no failed request, and a
topic added through data alone (taxonomy file, keyword file, labelled articles, corrections) is
trained, promoted and served."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from test_retrain_helpers import (  # noqa: F401  (live, live_template are fixtures)
    BASE_GOLD,
    NAME,
    Load,
    Serve,
    Setup,
    article_json,
    live,
    live_template,
    write_jsonl,
)

from tagger.artifacts import list_versions, load_model
from tagger.cli import main as tagger_main
from tagger.client import TaggerClient
from tagger.taxonomy import Topic
from tagger.text import analyze
from tagger.training.data import read_articles
from tagger.training.pipeline import predict_topics
from tagger.cli.retrain import wait_until_served
from tagger.training.retrain import _resolve_taxonomy, retrain

PROBE = {"id": "probe", "title": "واشنطن تفرض عقوبات جديدة على موسكو",
         "text": "أعلنت وزارة الخزانة الأمريكية فرض عقوبات جديدة على شركات روسية وتجميد أصولها."}


def test_good_candidate_is_promoted_and_served_without_failed_requests(live: Setup, tmp_path: Path) -> None:
    new = write_jsonl(tmp_path / "new.jsonl",
                      (article_json(a, a.topics) for a in live.data.gold[BASE_GOLD:1200]))
    with Serve(live.root) as server, Load(server.target, PROBE) as load:
        load.wait_for(f"{NAME}/1", 5)
        result = retrain(**live.retrain_kwargs(), new=[new])
        assert result.decision.promote, result.decision.table()
        assert result.published == live.root / "2"
        wait_until_served(server.target, f"{NAME}/2", timeout=60)  # what --wait-served does
        load.wait_for(f"{NAME}/2", 20)
    assert not load.errors, load.errors
    assert load.count(f"{NAME}/1") >= 5 and load.count(f"{NAME}/2") >= 20, load.versions[-5:]
    assert set(load.versions[-10:]) == {f"{NAME}/2"}  # switched, and stayed switched
    assert "Traceback" not in "".join(server.log)

    # The version folder: verified model, manifest with the gate's record, and its model card.
    loaded = load_model(live.root / "2")
    m = loaded.manifest
    assert m["retrain"]["previous_version"] == f"{NAME}/1" and m["retrain"]["gate"]["promote"]
    assert m["n_gold"] == 1200 and m["data_summary"]["new"]["labelled"] == 900
    assert m["metrics"]["dev"]["micro_f1"] > load_model(live.root / "1").manifest["metrics"]["dev"]["micro_f1"]
    card = (live.root / "2" / "MODEL.md").read_text("utf-8")
    for heading in ("## Data", "## Weak-label sources", "## Metrics", "## Comparison with the previous version",
                    "## Known weaknesses"):
        assert heading in card
    assert f"Gate against `{NAME}/1`" in card and "**promoted**" in card and "| v1 F1 | Δ |" in card


# ------------------------------------------------------------------------------ a new topic
ENV_TERMS = ["المناخ", "التغير المناخي", "تغير المناخ", "البيئة", "البيئية", "الاحتباس الحراري", "التلوث",
             "انبعاثات", "الطاقة المتجددة"]
ENVIRONMENT = Topic("environment", "بيئة", "environment", "the natural environment and climate",
                    "climate change, emissions, pollution, conservation, environmental policy", "")
_ENV_PHRASES = [" " + " ".join(analyze(t)) + " " for t in ENV_TERMS]


def is_environmental(title: str, body: str) -> bool:
    """The labelling rule of the synthetic topic: environment phrases three times or more."""
    text = " " + " ".join(analyze(f"{title} {body}")) + " "
    return sum(text.count(p) for p in _ENV_PHRASES) >= 3


def test_new_topic_added_through_data_alone_is_trained_and_served(live: Setup, tmp_path: Path, shared_dir: Path,
                                                                   capsys) -> None:
    """The README's "adding a topic" steps: a taxonomy file with the topic, keyword rules for it,
    labelled articles (here: gold articles relabelled by a keyword filter, plus corpus articles
    found by it whose other topics the live model pre-filled, as an annotator would start from),
    and corrections adding it to base gold articles. No code changes."""
    tx = live.data.tx.with_topic(ENVIRONMENT)
    taxonomy = tmp_path / "topics.json"
    taxonomy.write_text(json.dumps(tx.to_dict(), ensure_ascii=False), "utf-8")
    rules = json.loads((Path(__file__).parent.parent / "training/rules/keywords.json").read_text("utf-8"))
    rules["topics"]["environment"] = ENV_TERMS
    keywords = tmp_path / "keywords.json"
    keywords.write_text(json.dumps(rules, ensure_ascii=False), "utf-8")

    gold_ids = {a.id for a in live.data.gold}
    found = [a for a in itertools.islice(read_articles(shared_dir / "corpus/ant-train.jsonl.xz"), 12_000)
             if a.id not in gold_ids and is_environmental(a.title, a.body)][:150]
    prefill = predict_topics(load_model(live.root).model, found)
    rows = [article_json(a, [*a.topics, *(["environment"] if is_environmental(a.title, a.body) else [])])
            for a in live.data.gold[BASE_GOLD:1200]]
    rows += [article_json(a, [*(t for t in tx.ids if t in prefill[a.id]), "environment"]) for a in found]
    new = write_jsonl(tmp_path / "new.jsonl", rows)
    fixes = write_jsonl(tmp_path / "fixes.jsonl", ({"id": a.id, "add": ["environment"]}
                                                   for a in live.data.gold[:BASE_GOLD] if is_environmental(a.title, a.body)))
    assert sum("environment" in r["topics"] for r in rows) >= 50

    with Serve(live.root) as server:
        rc = tagger_main([*live.retrain_args(), "--taxonomy", str(taxonomy), "--keywords", str(keywords),
                          "--new", str(new), "--corrections", str(fixes), "--wait-served", server.target])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "environment (new)" in out and f"served: {server.target} answers with {NAME}/2" in out
        with TaggerClient(server.target) as client:
            topics = client.list_topics()
            assert [t.id for t in topics.topics][-1] == "environment" and topics.model_version == f"{NAME}/2"
            result = client.tag({"id": "climate", "title": "قمة المناخ تتعهد بخفض انبعاثات الكربون",
                                 "text": "تعهدت الدول المشاركة في قمة المناخ بخفض انبعاثات الغازات المسببة للاحتباس "
                                         "الحراري لمواجهة التغير المناخي، وحذر العلماء من أن التلوث وارتفاع حرارة "
                                         "الأرض يهددان البيئة والتنوع البيولوجي."})
            assert "environment" in [t.topic for t in result.topics], result
            assert result.model_version == f"{NAME}/2"
    assert [p.name for p in list_versions(live.root)] == ["1", "2"]
    m = load_model(live.root / "2").manifest
    assert m["topics"][-1] == "environment" and m["gold_topic_counts"]["environment"] >= 50
    assert m["cv_f1"]["environment"] > 0.5
    assert m["retrain"]["gate"]["new_topics"] == ["environment"]
    # The next retrain keeps the topic without being told again: the manifest carries the taxonomy.
    assert _resolve_taxonomy(None, load_model(live.root)) == tx
