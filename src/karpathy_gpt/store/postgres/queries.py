"""The search statement: the dense and BM25 top-N of the active version and what the passage
ranker needs of each candidate, in one query.

Each ranking can also be asked alone (``LEXICAL``, ``DENSE``), for tests and benchmarks.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ...lexical import tokenize
from ..base import CANDIDATES

HNSW_EF_SEARCH = 100  # > CANDIDATES, so the dense top-N is (near) exact
# How a version's full text is stored, recorded in its meta: 4 = kgpt_postings and the corpus's
# cased words (``names``, for the coverage decision); 3 = kgpt_postings, the embedded
# store's own BM25 weights (2 was a tsvector of its tokens, scored in SQL at query time; 1 a
# tsvector from PostgreSQL's own parser and stemmer). An older version is published again by the
# next ingest; until then it is searched by its vectors alone (it has no postings).
SEARCH_FORMAT = 4
# Each term's floor weight is its CANDIDATES-th largest (Postings.floor_weights): a version whose
# floors were taken at another depth would prune wrongly, so it is published again. Versions
# written before the depth was recorded took it at 50.
UNRECORDED_FLOOR_DEPTH = 50
# Memory a search may hash its partial scores in (~100 bytes a chunk holding an essential term,
# so ~300k chunks) before it spills them to disk; taken only when a query needs it.
SEARCH_WORK_MEM = "32MB"

# Dense top-N and BM25 top-N of the active version.
#
# BM25 is the embedded store's, exactly: kgpt_postings holds the weights bm25s computed at ingest
# (index.postings), the question arrives as lexical.tokenize's tokens with their counts, and a
# chunk's score is the sum of its postings' weights for those terms. The top N is found without
# summing every posting of common words ("we", "what": most chunks hold them), by MaxScore:
#   1. A term's floor (its N-th largest weight) is a score N chunks reach, so the N-th best score
#      is at least the largest floor. The weakest terms whose largest weights together stay below
#      it are "optional": a chunk holding only those cannot make the top N.
#   2. The other ("essential") terms' postings are summed: every chunk that can make the top N,
#      with a partial score.
#   3. The 2N best partial scores are completed with the optional terms' weights (looked up
#      by (term, chunk): ``optional_weights`` is written once and inlined into each lookup, NOT
#      MATERIALIZED, so only the chunks asked about are read); their N-th best exact score is
#      again a score N chunks reach.
#   4. The other chunks whose partial score plus all optional terms' largest weights reaches that
#      bar are completed too; the rest cannot make the top N. The top N of the exact scores is
#      BM25's top N.
RANKINGS = """
WITH active AS MATERIALIZED (
    SELECT version_id AS id FROM kgpt_active
),
terms AS MATERIALIZED (
    SELECT l.term, q.repeats, q.repeats * l.max_weight::float8 AS bound,
           q.repeats * l.floor_weight::float8 AS floor
    FROM unnest(%(lexemes)s::text[], %(repeats)s::int[]) AS q (lexeme, repeats)
    JOIN kgpt_lexemes l ON l.version_id = (SELECT id FROM active) AND l.lexeme = q.lexeme
),
split AS MATERIALIZED (
    SELECT term, repeats, bound,
           sum(bound) OVER (ORDER BY bound, term) < (SELECT max(floor) FROM terms) AS optional
    FROM terms
),
partial AS MATERIALIZED (
    SELECT p.ordinal, sum(s.repeats * p.weight::float8) AS score
    FROM split s
    JOIN kgpt_postings p ON p.version_id = (SELECT id FROM active) AND p.term = s.term
    WHERE NOT s.optional
    GROUP BY p.ordinal
),
optional_weights AS NOT MATERIALIZED (
    SELECT p.ordinal, s.repeats * p.weight::float8 AS weight
    FROM split s
    JOIN kgpt_postings p ON p.version_id = (SELECT id FROM active) AND p.term = s.term
    WHERE s.optional
),
leaders AS MATERIALIZED (
    SELECT l.ordinal, l.score + (
               SELECT coalesce(sum(weight), 0) FROM optional_weights o WHERE o.ordinal = l.ordinal
           ) AS score
    FROM (SELECT ordinal, score FROM partial ORDER BY score DESC, ordinal LIMIT %(leaders)s) l
),
contenders AS (
    SELECT c.ordinal, c.score + (
               SELECT coalesce(sum(weight), 0) FROM optional_weights o WHERE o.ordinal = c.ordinal
           ) AS score
    FROM partial c
    WHERE c.score + (SELECT coalesce(sum(bound), 0) FROM split WHERE optional) >= (
              SELECT score FROM leaders ORDER BY score DESC OFFSET %(candidates)s - 1 LIMIT 1
          )
      AND c.ordinal NOT IN (SELECT ordinal FROM leaders)
),
dense AS (
    SELECT ordinal, row_number() OVER (ORDER BY distance) AS rank
    FROM (
        SELECT ordinal, embedding <=> %(vector)s AS distance
        FROM kgpt_chunks
        WHERE version_id = (SELECT id FROM active)
        ORDER BY embedding <=> %(vector)s
        LIMIT %(candidates)s
    ) nearest
),
lexical AS (
    SELECT ordinal, score, row_number() OVER (ORDER BY score DESC, ordinal) AS rank
    FROM (
        SELECT ordinal, score FROM leaders
        UNION ALL
        SELECT ordinal, score FROM contenders
        ORDER BY score DESC, ordinal
        LIMIT %(candidates)s
    ) best
)
"""
# Every chunk of the two top-N (each once) with what the passage ranker reads: its cosine, its
# BM25 score (also for a dense candidate outside the BM25 top N: its postings for the question's
# terms, summed), its rank in each ranking (NULL outside it), and the chunk that follows it in
# the same lecture (the end of a passage cut near the chunk's end). Dense candidates first, as
# the embedded store orders them.
CANDIDATES_OF = (
    RANKINGS
    + """,
picked AS MATERIALIZED (
    SELECT ordinal FROM dense UNION SELECT ordinal FROM lexical
),
scored AS (
    SELECT p.ordinal, sum(t.repeats * p.weight::float8) AS score
    FROM terms t
    JOIN kgpt_postings p ON p.version_id = (SELECT id FROM active) AND p.term = t.term
    WHERE p.ordinal IN (SELECT ordinal FROM picked)
    GROUP BY p.ordinal
)
SELECT c.text, c.metadata, c.sentence_vectors, 1 - (c.embedding <=> %(vector)s) AS similarity,
       coalesce(s.score, 0)::float8, d.rank, l.rank,
       n.text, n.metadata, n.sentence_vectors,
       c.version_id, (SELECT chunks FROM kgpt_versions WHERE id = c.version_id)
FROM picked k
JOIN kgpt_chunks c ON c.version_id = (SELECT id FROM active) AND c.ordinal = k.ordinal
LEFT JOIN scored s ON s.ordinal = k.ordinal
LEFT JOIN dense d ON d.ordinal = k.ordinal
LEFT JOIN lexical l ON l.ordinal = k.ordinal
LEFT JOIN kgpt_chunks n ON n.version_id = c.version_id AND n.ordinal = c.ordinal + 1
     AND n.metadata->>'id' = c.metadata->>'id'
ORDER BY d.rank NULLS LAST, l.rank
"""
)
# How many chunks hold each term of a version (the ranker's IDF weights), and its cased words.
DOCUMENT_FREQUENCY = "SELECT lexeme, chunks FROM kgpt_lexemes WHERE version_id = %(version)s"
NAMES = "SELECT meta->'names' FROM kgpt_versions WHERE id = %(version)s"
# Each ranking alone (a WITH query nobody reads is not run).
LEXICAL = RANKINGS + "SELECT ordinal, score FROM lexical ORDER BY rank"
DENSE = RANKINGS + "SELECT ordinal FROM dense ORDER BY rank"


def search_params(query: str, vector: np.ndarray, depth: int = CANDIDATES) -> dict:
    """The rankings' parameters for ``query`` (already normalised) and its embedding."""
    terms = Counter(tokenize([query])[0])
    return {
        "lexemes": list(terms),
        "repeats": list(terms.values()),
        "vector": np.asarray(vector, dtype=np.float32),
        "candidates": depth,
        "leaders": 2 * depth,
    }
