"""The PostgreSQL store: hybrid search in one query, versions swapped atomically.

- ``schema``: the tables, and the numbered migrations from older schemas
- ``queries``: the search statement and its parameters
- ``writer``: publishing a built index as a new version, and pruning old ones
- ``store``: the connection pool and the reads; ``PostgresStore`` is the ``Store``

Schema (created with ``IF NOT EXISTS``; ``kgpt_schema_version`` records which one is in place,
``MIGRATIONS`` brings an older one up to date)::

    kgpt_versions   one row per ingested corpus version: its index key, metadata, chunk count
    kgpt_active     one row: the version every query reads
    kgpt_chunks     partitioned by version: text, metadata (JSONB), embedding vector(384)
                    (HNSW, cosine), the sentence vectors
    kgpt_postings   partitioned by version: BM25's inverted index, one row per (term, chunk)
                    with the chunk's BM25 weight for the term, keyed (version, term, chunk)
    kgpt_lexemes    per version and term: its id in kgpt_postings, how many chunks hold it, and
                    the two weight bounds MaxScore needs (see index.postings)

Each version is written into its own partitions, indexed and attached in one transaction, then
made active by a one-row update in the next: a query reads ``kgpt_active`` and the partitions in
one statement, one snapshot, so it sees the old index or the new one, never half of one. A
partition per version also gives each version its own HNSW graph, so a query never walks (and
filters out) another version's rows.
Old versions are dropped whole, the newest ``KEEP_VERSIONS`` kept.

API processes hold only a connection pool: any number of workers and machines share one database.
"""

from .queries import CANDIDATES_OF, RANKINGS, SEARCH_FORMAT, search_params
from .schema import SCHEMA_VERSION
from .store import PostgresStore, Version, redact
from .writer import Writer

__all__ = [
    "RANKINGS",
    "SCHEMA_VERSION",
    "CANDIDATES_OF",
    "SEARCH_FORMAT",
    "PostgresStore",
    "Version",
    "Writer",
    "redact",
    "search_params",
]
