"""Calibration scores on hand-computable inputs (estimation/calibration.py)."""

import numpy as np
import pytest

from mmtheory.estimation.calibration import (
    brier_score,
    classification_scores,
    expected_calibration_error,
)


def test_perfect_and_uniform_predictions():
    y = np.array([0, 1, 2, 1])
    perfect = np.eye(3)[y]
    s = classification_scores(perfect, y)
    assert s["accuracy"] == 1 and s["brier"] == 0 and s["ece"] == 0
    uniform = np.full((4, 3), 1 / 3)
    assert brier_score(uniform, y) == pytest.approx(2 / 3)  # (2/3)^2 + 2 (1/3)^2
    assert classification_scores(uniform, y)["cross_entropy"] == pytest.approx(np.log(3))


def test_ece_of_an_overconfident_model():
    # always 90% sure, right half the time: ECE = |0.5 - 0.9| = 0.4
    proba = np.array([[0.9, 0.1]] * 4)
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(proba, y) == pytest.approx(0.4)
