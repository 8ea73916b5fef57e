import numpy as np
import pytest

from tagger.uncertainty import margin, rank


def test_a_score_on_its_threshold_is_the_least_sure():
    thresholds = np.array([0.5, 0.3])
    scores = np.array([
        [0.99, 0.01],   # sure on both
        [0.50, 0.01],   # on the first threshold
        [0.90, 0.35],   # near the second
    ])
    m = margin(scores, thresholds)
    assert m[1] == pytest.approx(0.0, abs=1e-9)
    assert m[1] < m[2] < m[0]
    assert rank(scores, thresholds).tolist() == [1, 2, 0]


def test_distance_is_measured_in_logits_not_probabilities():
    # 0.99 vs 0.94 is 0.05 apart in probability, like 0.50 vs 0.45, but far more certain.
    m = margin(np.array([[0.50], [0.99]]), np.array([0.45]))
    m2 = margin(np.array([[0.99]]), np.array([0.94]))
    assert m[0] < m2[0]


def test_ties_keep_input_order():
    scores = np.array([[0.3], [0.2], [0.3], [0.2]])
    assert rank(scores, np.array([0.5])).tolist() == [0, 2, 1, 3]


def test_extreme_scores_are_finite():
    m = margin(np.array([[0.0, 1.0]]), np.array([0.5, 0.5]))
    assert np.all(np.isfinite(m)) and m[0] > 10


@pytest.mark.parametrize("scores, thresholds, message", [
    (np.zeros((2, 3)), np.full(2, 0.5), "disagree"),
    (np.zeros((2, 2)), np.array([0.5, 1.0]), r"\(0, 1\)"),
    (np.array([[0.5, 1.5]]), np.array([0.5, 0.5]), "probabilities"),
    (np.array([[0.5, np.nan]]), np.array([0.5, 0.5]), "probabilities"),
])
def test_bad_input_is_a_clear_error(scores, thresholds, message):
    with pytest.raises(ValueError, match=message):
        margin(scores, thresholds)
