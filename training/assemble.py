"""Training data assembled by id: base gold + corpus, label files, new data, corrections.

`tagger train` and `tagger retrain` both build their training set here, so the same files give the
same gold and unlabelled articles whichever command reads them:

    gold files (full articles with topics)
    + the corpus (unlabelled; weak labels come later, in training.fit)
    + label files: {"id", "topics"} rows that give corpus articles their full labels by id, so
      annotations of the corpus live in the repo without copying its text (training/labels/)
    + new data (retrain): labelled rows add or replace gold, unlabelled rows add or replace corpus articles
    + corrections (retrain): {"id", "topics"} replaces an article's labels, {"id", "add", "remove"} edits them

Every id that names nothing, every unknown topic and every label file row that is not a full label set
is an InputError naming file:line: a typo must not silently train a different model.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagger.io import InputError, read_jsonl
from tagger.taxonomy import Taxonomy
from tagger.training.data import Article, read_articles, read_gold

__all__ = [
    "LABELS_DIR",
    "Correction",
    "TrainingData",
    "apply_corrections",
    "assemble_training_data",
    "default_label_files",
    "read_corrections",
    "read_labels",
    "choose_label_files",
]

#: Annotations of corpus articles shipped with the repo (training/labels/README.md says how they were made).
LABELS_DIR = Path(__file__).resolve().parent / "labels"


def default_label_files() -> list[Path]:
    """The label files `tagger train` and `tagger retrain` read unless told otherwise, in name order."""
    return sorted(LABELS_DIR.glob("*.jsonl"))


def choose_label_files(given: Sequence[str | Path] | None, corpus: Path, default_corpus: Path) -> list[Path]:
    """The label files to train with: those ``given``, none for ``["none"]``, or (``given`` None) the
    shipped annotations when training on the corpus they annotate (their ids name its articles;
    another corpus would not have them). Raises ValueError for ``none`` mixed with files."""
    if given is None:
        return default_label_files() if Path(corpus).resolve() == Path(default_corpus).resolve() else []
    if any(str(p).lower() == "none" for p in given):
        if len(given) > 1:
            raise ValueError("--labels none cannot be combined with label files")
        return []
    return [Path(p) for p in given]


@dataclass(frozen=True)
class Correction:
    """A label fix for one article: ``topics`` replaces its labels, or ``add``/``remove`` edit them."""

    id: str
    topics: tuple[str, ...] | None
    add: tuple[str, ...]
    remove: tuple[str, ...]
    where: str


def read_corrections(path: Path, taxonomy: Taxonomy, row: str = "a correction") -> list[Correction]:
    """JSONL, one correction per line: {"id", "topics": [...]} or {"id", "add": [...], "remove": [...]}.
    ``row`` names a line in the error messages (label files share this reader)."""
    out = []
    for line_no, obj in read_jsonl(path):
        where = f"{path}:{line_no}"
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            raise InputError(f"{where}: {row} needs a string 'id'")
        unknown = set(obj) - {"id", "topics", "add", "remove", "note"}
        if unknown:
            raise InputError(f"{where}: unknown field(s) {sorted(unknown)}; use id, topics or add/remove, note")
        if "topics" in obj and ("add" in obj or "remove" in obj):
            raise InputError(f"{where}: give either 'topics' (replace) or 'add'/'remove' (edit), not both")
        if not any(k in obj for k in ("topics", "add", "remove")):
            raise InputError(f"{where}: {row} needs 'topics' or 'add'/'remove'")
        lists = {}
        for key in ("topics", "add", "remove"):
            if key in obj:
                if not isinstance(obj[key], list):
                    raise InputError(f"{where}: '{key}' must be a list of topic ids")
                lists[key] = tuple(taxonomy.validate(obj[key], where=where))
        out.append(Correction(obj["id"], lists.get("topics"), lists.get("add", ()), lists.get("remove", ()), where))
    return out


def read_labels(path: Path, taxonomy: Taxonomy) -> list[Correction]:
    """A label file: JSONL, one {"id", "topics": [...]} per line giving a corpus article its full labels
    (an empty list means "none of the topics"). Edits (add/remove) belong in corrections, not here."""
    rows = read_corrections(path, taxonomy, row="a label row")
    for c in rows:
        if c.topics is None:
            raise InputError(f"{c.where}: a label file gives each article its full 'topics'; "
                             "'add'/'remove' edits belong in a corrections file")
    return rows


def _checked_labels(paths: Sequence[Path], taxonomy: Taxonomy, gold: Mapping[str, Article],
                    corpus_articles: Mapping[str, Article], corpus: Path) -> list[Correction]:
    """All rows of the label files, each naming a corpus article that is not gold and no other row names."""
    rows: list[Correction] = []
    seen: dict[str, str] = {}
    for path in paths:
        for c in read_labels(path, taxonomy):
            if c.id in seen:
                raise InputError(f"{c.where}: article {c.id!r} is labelled twice (first at {seen[c.id]})")
            if c.id in gold:
                raise InputError(f"{c.where}: article {c.id!r} is already a gold article; label files label corpus "
                                 "articles (change a gold label with a corrections file)")
            if c.id not in corpus_articles:
                raise InputError(f"{c.where}: no article with id {c.id!r} in the corpus {corpus}")
            seen[c.id] = c.where
            rows.append(c)
    return rows


def apply_corrections(gold: dict[str, Article], unlabelled: dict[str, Article], corrections: Iterable[Correction],
                      taxonomy: Taxonomy) -> dict[str, int]:
    """Fix labels in place by id. An unlabelled article given full ``topics`` becomes gold; an id
    that is nowhere, or add/remove on an article without labels, is an error (a typo must not
    silently do nothing)."""
    changed: set[str] = set()
    promoted = entries = 0
    for c in corrections:
        entries += 1
        if c.id in gold:
            art = gold[c.id]
            old = set(art.topics or ())
            new = set(c.topics) if c.topics is not None else (old | set(c.add)) - set(c.remove)
        elif c.id in unlabelled and c.topics is not None:
            art, old, new = unlabelled.pop(c.id), None, set(c.topics)
            promoted += 1
        elif c.id in unlabelled:
            raise InputError(f"{c.where}: article {c.id} has no labels to add to or remove from; give its full 'topics'")
        else:
            raise InputError(f"{c.where}: no article with id {c.id!r} in the training data")
        if new != old:
            changed.add(c.id)
        gold[c.id] = dataclasses.replace(art, topics=tuple(t for t in taxonomy.ids if t in new))
    return {"entries": entries, "changed": len(changed), "promoted_to_gold": promoted}


# Fields of a --new row whose loss under a mistyped key would go unnoticed: the row would still be read
# (unlabelled, without text, tags or sections), so a near miss of one of them is an error.
_TYPO_TARGETS = ("topics", "title", "text", "tags", "sections", "outlet")


def _check_new_row(obj: Mapping[str, Any], article: Article, where: str) -> None:
    """Refuse a --new row a typo would silently change: a key that is a near miss of a field the row
    lacks (``topic`` for ``topics`` would make a labelled article unlabelled), or no text at all."""
    for key in obj:
        if key in _TYPO_TARGETS:
            continue
        low = key.lower()
        match = low if low in _TYPO_TARGETS else next(iter(difflib.get_close_matches(low, _TYPO_TARGETS, 1, 0.8)), None)
        if match and match not in obj:
            hint = (" (without 'topics' the row would be read as an unlabelled article)" if match == "topics"
                    else f" (without it the row has no '{match}')")
            raise InputError(f"{where}: unknown field {key!r}: did you mean {match!r}?{hint}")
    if not (article.title.strip() or article.body.strip()):
        kind = "labelled article" if article.topics is not None else "article"
        hint = ""
        if "raw" in obj:
            hint = "; 'raw' page text is not read for training, give it as 'title' and 'text'"
        raise InputError(f"{where}: {kind} {article.id!r} has no text (empty 'title' and 'text'){hint}")


@dataclass
class TrainingData:
    gold: list[Article]
    unlabelled: list[Article]  # gold ids removed
    summary: dict[str, Any] = field(default_factory=dict)


def assemble_training_data(
    *, gold: Sequence[Path], corpus: Path, taxonomy: Taxonomy, labels: Sequence[Path] = (),
    new: Sequence[Path] = (), corrections: Sequence[Path] = (),
) -> TrainingData:
    """Base gold + corpus, then label files (corpus articles made gold by id), then new data by id
    (labelled rows add or replace gold, unlabelled rows add or replace corpus articles), then
    corrections by id. Order is the files' order, so it is reproducible.

    A label row for an id that is not a corpus article, is already gold or is labelled twice, and a
    new row with no text or with a near miss of a field it lacks (``topic`` for ``topics``), is an
    InputError naming file:line."""
    gold_by_id: dict[str, Article] = {}
    gold_file: dict[str, Path] = {}
    for g in gold:
        for a in read_gold(g, taxonomy):
            if a.id in gold_by_id:
                raise InputError(f"{g}: article {a.id!r} is also in gold file {gold_file[a.id]}; "
                                 "give each gold article once (a corrections file changes labels)")
            gold_by_id[a.id], gold_file[a.id] = a, g
    unl_by_id: dict[str, Article] = {a.id: a for a in read_articles(corpus)}
    annotations = _checked_labels(labels, taxonomy, gold_by_id, unl_by_id, corpus)
    if annotations:
        apply_corrections(gold_by_id, unl_by_id, annotations, taxonomy)
    new_stats = Counter()
    for path in new:
        for a in read_articles(path, taxonomy, check=_check_new_row):
            new_stats["tagged"] += bool(a.tags)
            if a.topics is not None:
                new_stats["labelled"] += 1
                new_stats["replaced_gold"] += a.id in gold_by_id
                gold_by_id[a.id] = a
            elif a.id in gold_by_id:
                # An already labelled article seen again with its site tags: keep the labels, take the tags.
                new_stats["unlabelled"] += 1
                if a.tags and not gold_by_id[a.id].tags:
                    gold_by_id[a.id] = dataclasses.replace(gold_by_id[a.id], tags=a.tags)
            else:
                new_stats["unlabelled"] += 1
                unl_by_id[a.id] = a
    fixes: list[Correction] = []
    for path in corrections:
        fixes.extend(read_corrections(path, taxonomy))
    corr = apply_corrections(gold_by_id, unl_by_id, fixes, taxonomy) if fixes else {}
    gold_list = list(gold_by_id.values())
    unlabelled = [a for a in unl_by_id.values() if a.id not in gold_by_id]
    summary = {
        "labels": {"files": len(labels), "articles": len(annotations)} if labels else {},
        "new": {k: int(new_stats[k]) for k in ("labelled", "replaced_gold", "unlabelled", "tagged")} if new else {},
        "corrections": corr,
        "gold_outlets": sorted({a.outlet for a in gold_list if a.outlet}),
    }
    return TrainingData(gold_list, unlabelled, summary)
