"""The packaged model run by ONNX Runtime: word pieces from ``tokenizers``, mean pooling in numpy.

The files come from ``onnx_export`` (made once per machine); running them needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .minilm import DIMENSIONS, MAX_TOKENS, model_dir


class OnnxEngine:
    """The model on ONNX Runtime; ``encode`` is thread-safe and gives a text the same vector
    whatever else it is encoded with.

    float32: texts of the same number of word pieces run together, up to ``PASS_TOKENS`` (the
    model's own limit) a pass. With no padding every row is computed as it would be alone (the
    same bits: tests/test_embedding.py), and short texts stop paying a whole pass each. More per
    pass saves little and holds more memory at once.

    int8: one text per pass, because its activations are quantised with one scale per input
    tensor: in a batch, a text's vector would depend on its neighbours by up to ~1% of cosine,
    so a question's passages could change with the traffic.
    """

    PASS_TOKENS = MAX_TOKENS

    def __init__(self, path: Path, threads: int = 1, quantized: bool = False):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: the cores are shared with the web server.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._pass_tokens = 1 if quantized else self.PASS_TOKENS

    def encode(self, texts: list[str]) -> np.ndarray:
        pieces = self.word_pieces(texts)
        by_length: dict[int, list[int]] = {}
        for n, ids in enumerate(pieces):
            by_length.setdefault(len(ids), []).append(n)
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for length, rows in by_length.items():
            step = max(1, self._pass_tokens // length)
            for start in range(0, len(rows), step):
                part = rows[start : start + step]
                vectors[part] = self._run(np.array([pieces[n] for n in part], dtype=np.int64))
        return vectors

    def word_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        # sentence-transformers strips each text before tokenising; so do we.
        return [e.ids for e in self._tokenizer.encode_batch([t.strip() for t in texts])]

    def _run(self, ids: np.ndarray) -> np.ndarray:
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        hidden = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        pooled = hidden.mean(axis=1)  # mean pooling; no padding to mask out
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)
