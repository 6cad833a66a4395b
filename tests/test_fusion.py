"""Weighted reciprocal rank fusion, the rule both stores rank hybrid results by."""

from __future__ import annotations

import pytest

from karpathy_gpt.store.base import DENSE_WEIGHT, LEXICAL_WEIGHT, RRF_K, reciprocal_rank_fusion


def test_each_ranking_adds_its_weight_over_k_plus_rank():
    scores = reciprocal_rank_fusion([[7, 8], [8, 9]], weights=[3.0, 1.0])
    assert scores[7] == pytest.approx(3 / (RRF_K + 1))
    assert scores[8] == pytest.approx(3 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert scores[9] == pytest.approx(1 / (RRF_K + 2))


def test_unweighted_fusion_counts_every_ranking_once():
    assert reciprocal_rank_fusion([[1, 2], [2, 1]], k=10) == pytest.approx(
        {1: 1 / 11 + 1 / 12, 2: 1 / 12 + 1 / 11}
    )


def test_the_dense_ranking_outweighs_the_lexical_one():
    """A chunk the embedding ranks 2nd and BM25 10th beats BM25's 1st at embedding rank 5."""
    dense = [10, 20, 30, 40, 50]
    lexical = [50, 1, 2, 3, 4, 5, 6, 7, 8, 20]
    scores = reciprocal_rank_fusion([dense, lexical], weights=[DENSE_WEIGHT, LEXICAL_WEIGHT])
    assert scores[20] > scores[50]
    assert (
        reciprocal_rank_fusion([dense, lexical])[50] > reciprocal_rank_fusion([dense, lexical])[20]
    )


def test_weights_must_match_the_rankings():
    with pytest.raises(ValueError, match="2 rankings but 1 weights"):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])
