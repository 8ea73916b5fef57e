"""Small builders shared by tests (not fixtures, so tests can call them with arguments)."""
from __future__ import annotations

import numpy as np

from tagger.features import TfidfFeaturizer
from tagger.model import TopicModel
from tagger.text import analyze

TINY_DOCS = {
    "sanctions": "فرضت الولايات المتحدة عقوبات جديدة على كوريا الشمالية وجمدت اصول شركات",
    "sports": "فاز المنتخب في مباراة كرة القدم وتأهل إلى نهائي كأس العالم",
    "economy": "ارتفعت أسعار الأسهم في البورصة وتراجع الدولار أمام اليورو",
}


def tiny_model(topics: tuple[str, ...] = ("sanctions", "sports", "economy")) -> TopicModel:
    """A hand-made model whose weights make each TINY_DOCS text score high on its own topic."""
    tokens = {t: analyze(TINY_DOCS[t]) for t in topics}
    feat = TfidfFeaturizer(min_df=1, max_features=None).fit(list(tokens.values()))
    coef = np.zeros((feat.n_features, len(topics)))
    for j, t in enumerate(topics):
        for tok in set(tokens[t]):
            coef[feat.vocabulary_[tok], j] = 8.0
    return TopicModel(feat, topics, coef, np.full(len(topics), -3.0), np.full(len(topics), 0.5))
