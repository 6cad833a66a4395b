"""Reciprocal rank fusion, the rule of the plain-RRF baseline the evaluation measures against."""

from __future__ import annotations

import pytest

from karpathy_gpt.store.base import RRF_K, reciprocal_rank_fusion


def test_each_ranking_adds_its_weight_over_k_plus_rank():
    scores = reciprocal_rank_fusion([[7, 8], [8, 9]], weights=[3.0, 1.0])
    assert scores[7] == pytest.approx(3 / (RRF_K + 1))
    assert scores[8] == pytest.approx(3 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert scores[9] == pytest.approx(1 / (RRF_K + 2))


def test_unweighted_fusion_counts_every_ranking_once():
    assert reciprocal_rank_fusion([[1, 2], [2, 1]], k=10) == pytest.approx(
        {1: 1 / 11 + 1 / 12, 2: 1 / 12 + 1 / 11}
    )


def test_weights_must_match_the_rankings():
    with pytest.raises(ValueError, match="2 rankings but 1 weights"):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])
