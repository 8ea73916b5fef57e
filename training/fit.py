"""Fit tagger's model: TF-IDF features, gold + weak labels, one logistic regression per topic,
per-topic thresholds from cross-validation on the gold training articles.

Recipe (`python bench/train_eval.py --ablations` measures each weak source's share):
1. Featurise every corpus article (the vocabulary and idf come from the whole corpus, labelled or not).
2. Stage 1: a logistic regression per topic on the gold articles alone.
3. Weak labels for the unlabelled corpus: the outlet section rules where they are reliable, and the
   stage-1 model's confident predictions (self-training: p >= 0.9 positive, p <= 0.1 negative), with
   keyword rules adding a positive where the model already leans that way (p >= 0.5).
4. Stage 2: a logistic regression per topic on gold (weight 1) + weak labels (``weak_weight``),
   classes balanced, so rare topics (sanctions, energy, health) are not drowned.
5. Thresholds: stage 2 is refitted on 5 folds of the gold articles (weak labels fixed); each topic's
   threshold maximises F1 on the out-of-fold scores. Dev gold is never used.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from tagger.features import MAX_FEATURES, TfidfFeaturizer
from tagger.model import TopicModel
from tagger.taxonomy import Taxonomy
from tagger.text import document_tokens
from tagger.training.data import Article
from tagger.training.weak import ABSTAIN, KeywordRules, SectionRules

if TYPE_CHECKING:
    from tagger.training.tags import TagRules

__all__ = ["TrainConfig", "TrainResult", "fit_model"]


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    min_df: int = 2
    # Chosen on leave-one-outlet-out pooled micro-F1 (bench/outlet_cv.py): 40k 0.7907 vs 50k 0.7865;
    # fewer, more common n-grams carry better to outlets the model never saw.
    max_features: int = 40_000
    C: float = 30.0
    weak_weight: float = 0.3
    use_sections: bool = True
    use_self_training: bool = True
    use_keywords: bool = True
    self_train_hi: float = 0.9
    self_train_lo: float = 0.1
    self_train_rounds: int = 1
    cv_folds: int = 5
    cv_by_outlet: bool = False
    #: The served model's empty-answer rule (TopicModel.empty_fallback); 0 = thresholds alone. 0.7 was
    #: chosen on version 4's out-of-outlet scores and held on all three seeds of version 5's
    #: (bench/decision_rules.py: +0.003 LOOO micro-F1 each).
    empty_fallback: float = 0.7
    n_jobs: int = 2

    def __post_init__(self) -> None:
        if self.min_df < 1 or not 1 <= self.max_features <= MAX_FEATURES:
            raise ValueError(f"min_df must be >= 1 and max_features in [1, {MAX_FEATURES:,}]")
        if self.C <= 0 or self.weak_weight < 0:
            raise ValueError("C must be > 0 and weak_weight >= 0")
        if not 0 < self.self_train_lo < self.self_train_hi < 1:
            raise ValueError("need 0 < self_train_lo < self_train_hi < 1")
        if self.self_train_rounds < 1:
            raise ValueError("self_train_rounds must be >= 1")
        if self.cv_folds < 2:
            raise ValueError("cv_folds must be >= 2")
        if not 0 <= self.empty_fallback < 1:
            raise ValueError("empty_fallback must be in [0, 1)")


@dataclass
class TrainResult:
    model: TopicModel
    config: TrainConfig
    stats: dict = field(default_factory=dict)


_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)
_SMOOTH_HALF_WIDTH = 2  # grid steps of 0.025 on each side


def _best_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """Threshold maximising F1 of ``s >= t``, on the F1 curve smoothed over neighbouring thresholds.

    The raw curve is jagged on a few hundred positives (one article moves a rare topic's F1), so its
    argmax is partly noise; averaging each point with its neighbours (±0.05) picks the middle of a
    good plateau instead of a spike. Ties go to the threshold nearest 0.5.
    """
    pos = y.sum()
    if pos == 0:
        return 0.5
    f1 = np.empty(len(_THRESHOLDS))
    for i, t in enumerate(_THRESHOLDS):
        p = s >= t
        tp = float((p & (y == 1)).sum())
        f1[i] = 2 * tp / (p.sum() + pos) if tp else 0.0
    w = _SMOOTH_HALF_WIDTH
    smooth = np.array([f1[max(0, i - w): i + w + 1].mean() for i in range(len(f1))])
    best = smooth.max()
    candidates = [t for t, v in zip(_THRESHOLDS, smooth) if v >= best - 1e-12]
    return float(min(candidates, key=lambda t: abs(t - 0.5)))


def _lr(C: float, seed: int) -> LogisticRegression:
    return LogisticRegression(C=C, solver="liblinear", class_weight="balanced", random_state=seed)


def _fit_topic(X: sp.csr_matrix, y: np.ndarray, w: np.ndarray, C: float, seed: int) -> tuple[np.ndarray, float]:
    if y.min() == y.max():  # a topic with one class in this fold: constant scorer
        return np.zeros(X.shape[1]), (8.0 if y[0] else -8.0)
    clf = _lr(C, seed).fit(X, y, sample_weight=w)
    return clf.coef_.ravel(), float(clf.intercept_[0])


def _fit_all(Xg, Yg, Xu, Lu, cfg: TrainConfig, parallel: Parallel) -> tuple[np.ndarray, np.ndarray]:
    """Stage-2 fit of every topic on gold rows + the weak rows that have an opinion on it."""
    jobs = []
    for j in range(Yg.shape[1]):
        if Xu is not None and Lu is not None and cfg.weak_weight > 0:
            m = Lu[:, j] != ABSTAIN
            X = sp.vstack([Xg, Xu[m]]).tocsr()
            y = np.r_[Yg[:, j], Lu[m, j]]
            w = np.r_[np.ones(Xg.shape[0]), np.full(int(m.sum()), cfg.weak_weight)]
        else:
            X, y, w = Xg, Yg[:, j], np.ones(Xg.shape[0])
        jobs.append(delayed(_fit_topic)(X, y, w, cfg.C, cfg.seed))
    out = parallel(jobs)
    return np.column_stack([c for c, _ in out]), np.array([b for _, b in out])


def _weak_labels(
    P: np.ndarray | None, fired: np.ndarray | None, sections: np.ndarray | None, cfg: TrainConfig,
    tagged: np.ndarray | None = None,
) -> np.ndarray:
    """Combine the weak sources into one label matrix (1, 0 or ABSTAIN per article and topic).

    Model scores ``P`` label where confident; a keyword rule adds a positive only where the model
    already leans that way (alone it is too noisy: see `tagger evaluate`); without a model the rules
    label alone. Audited site-tag rules (``tagged``, see training/tags.py) add positives, even
    against the model. Section rules were audited on gold, so they override all of them.
    """
    n, k = next(x for x in (P, fired, sections, tagged) if x is not None).shape
    L = np.full((n, k), ABSTAIN, dtype=np.int8)
    if P is not None:
        L[P >= cfg.self_train_hi] = 1
        L[P <= cfg.self_train_lo] = 0
        if fired is not None:
            L[fired & (P >= 0.5) & (L == ABSTAIN)] = 1
    elif fired is not None:
        L[fired] = 1
    if tagged is not None:
        L[tagged == 1] = 1
    if sections is not None:
        L[sections != ABSTAIN] = sections[sections != ABSTAIN]
    return L


def _folds(gold: Sequence[Article], unlabelled: Sequence[Article], cfg: TrainConfig):
    """Cross-validation folds over the gold articles: (train idx, test idx, unlabelled rows kept).

    With ``cv_by_outlet`` and two or more outlets, each fold holds out one whole outlet (its unlabelled
    articles leave the weak data too): thresholds are then chosen on text from an outlet the fold's
    model never saw, which is the situation the service is in on a new site.
    """
    outlets = np.array([a.outlet for a in gold])
    uniq = sorted(set(outlets))
    if cfg.cv_by_outlet and len(uniq) >= 2 and all(o for o in uniq):
        u_outlets = np.array([a.outlet for a in unlabelled])
        for o in uniq:
            yield np.flatnonzero(outlets != o), np.flatnonzero(outlets == o), u_outlets != o
        return
    keep = np.ones(len(unlabelled), dtype=bool)
    for tr, te in KFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed).split(np.zeros(len(gold))):
        yield tr, te, keep


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_model(
    gold: Sequence[Article],
    unlabelled: Sequence[Article],
    taxonomy: Taxonomy,
    cfg: TrainConfig = TrainConfig(),
    keyword_rules: KeywordRules | None = None,
    section_rules: SectionRules | None = None,
    log=print,
    tag_rules: TagRules | None = None,
) -> TrainResult:
    """Train on gold articles plus weakly labelled ``unlabelled`` ones (whose gold ids are skipped).

    ``tag_rules`` (optional) turns the audited site tags of unlabelled articles into weak positives.
    """
    t0 = time.perf_counter()
    topics = taxonomy.ids
    k = len(topics)
    gold_ids = {a.id for a in gold}
    unlabelled = [a for a in unlabelled if a.id not in gold_ids]
    if len(gold) < cfg.cv_folds * 2:
        raise ValueError(f"need at least {cfg.cv_folds * 2} gold articles, got {len(gold)}")
    Yg = np.array([[t in (a.topics or ()) for t in topics] for a in gold], dtype=np.int8)
    empty = [t for j, t in enumerate(topics) if Yg[:, j].sum() == 0]
    if empty:
        log(f"warning: no gold article has topic(s) {empty}; they rely on weak labels alone")

    gold_tokens = [document_tokens(a.title, a.body) for a in gold]
    unl_tokens = [document_tokens(a.title, a.body) for a in unlabelled]
    feat = TfidfFeaturizer(min_df=cfg.min_df, max_features=cfg.max_features).fit(gold_tokens + unl_tokens)
    Xg = feat.transform_tokens(gold_tokens)
    Xu = feat.transform_tokens(unl_tokens) if unlabelled else None
    log(f"features: {feat.n_features} n-grams from {len(gold) + len(unlabelled)} articles "
        f"({time.perf_counter() - t0:.1f}s)")
    stats: dict = {"n_gold": len(gold), "n_unlabelled": len(unlabelled), "n_features": feat.n_features}

    with Parallel(n_jobs=cfg.n_jobs, prefer="threads") as parallel:
        Lu = None
        if Xu is not None:
            fired = (
                np.array([keyword_rules.fire(t) for t in unl_tokens])
                if cfg.use_keywords and keyword_rules is not None else None
            )
            sections = (
                np.array([section_rules.labels(a.sections) for a in unlabelled])
                if cfg.use_sections and section_rules is not None else None
            )
            tagged = np.array([tag_rules.labels(a.tags) for a in unlabelled]) if tag_rules else None
            P = None
            if cfg.use_self_training:
                W1, b1 = _fit_all(Xg, Yg, None, None, cfg, parallel)
                P = _sigmoid(Xu @ W1 + b1)
            sources = (P, fired, sections, tagged)
            Lu = _weak_labels(P, fired, sections, cfg, tagged) if any(x is not None for x in sources) else None
            for _ in range(cfg.self_train_rounds - 1 if P is not None else 0):
                # Another round: the model trained with weak labels relabels the corpus.
                W1, b1 = _fit_all(Xg, Yg, Xu, Lu, cfg, parallel)
                Lu = _weak_labels(_sigmoid(Xu @ W1 + b1), fired, sections, cfg, tagged)
            stats["weak_labels"] = {} if Lu is None else {
                t: {"positive": int((Lu[:, j] == 1).sum()), "negative": int((Lu[:, j] == 0).sum())}
                for j, t in enumerate(topics)
            }
            if tagged is not None:
                stats["tag_rule_positives"] = {t: int((tagged[:, j] == 1).sum()) for j, t in enumerate(topics)}
            log(f"weak labels ready ({time.perf_counter() - t0:.1f}s)")

        oof = np.zeros(Yg.shape)
        for tr, te, keep_u in _folds(gold, unlabelled, cfg):
            W, b = _fit_all(
                Xg[tr], Yg[tr], Xu[keep_u] if Xu is not None else None, Lu[keep_u] if Lu is not None else None,
                cfg, parallel,
            )
            oof[te] = _sigmoid(Xg[te] @ W + b)
        thresholds = np.array([_best_threshold(Yg[:, j], oof[:, j]) for j in range(k)])
        log(f"cross-validated thresholds ({time.perf_counter() - t0:.1f}s)")
        W, b = _fit_all(Xg, Yg, Xu, Lu, cfg, parallel)

    stats["cv_oof_scores"] = oof
    stats["cv_labels"] = Yg
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    model = TopicModel(feat, topics, W, b, thresholds, cfg.empty_fallback or None)
    log(f"trained in {stats['seconds']}s")
    return TrainResult(model, cfg, stats)


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
