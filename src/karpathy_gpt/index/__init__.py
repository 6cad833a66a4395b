"""The index of a corpus, whatever holds it: built once per index key, then saved or published.

- ``built``: the backend-neutral index (chunks, vectors, lexical postings) every store is
  written from.
- ``build``: corpus -> chunks -> vectors and BM25 postings, and the key that names the result.
- ``embedded``: saving and loading the embedded index (a folder, swapped atomically).
- ``postings``: BM25's (term, chunk) weights, as a store outside the process keeps them.
- ``backend``: the one place that picks the store from the settings, and ``ingest``: load the
  current index, or build and write it.

Import from the modules themselves: this package imports none of them, so the stores can use
``built`` without a cycle.
"""
