"""The packaged MiniLM as ONNX files for ONNX Runtime: exported once per machine, then reused.

``onnx_model(cache_dir, quantized)`` returns the path of ``model.onnx`` (float32) or
``model-int8.onnx`` (int8 weights, per output channel), exporting both first if they are missing.
The export is the only step that needs torch, so it runs in a child process
(``python -m karpathy_gpt.onnx_export``): a server that finds the files never imports torch.

Layout under the cache folder (``KGPT_MODEL_DIR``)::

    minilm-<hash>-v<recipe>/  <hash>: SHA-256 of the packaged model's files; <recipe>: below
      model.onnx              traced with torch, fused for BERT by onnxruntime's optimizer, and
      model-int8.onnx         checked against sentence-transformers before it is kept
      export.json             written last: a folder without it is incomplete and ignored
    .tmp-minilm-...-<pid>/    an export in progress, renamed into place only when complete

Exports of several processes at once are serialised by a lock file; the first one writes the
folder and the rest find it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import KgptError
from .minilm import model_dir
from .storage import StorageError, writing

log = logging.getLogger(__name__)

# Bump when the export, fusion or quantisation recipe changes: vectors made by another recipe
# differ a little, so the backend's model name (and with it every cache key) carries this too.
EXPORT_VERSION = "1"
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
READY_FILE = "export.json"
HASH_MEMO = "model-hash.json"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "sentence_bert_config.json")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The traced graph must reproduce sentence-transformers' vectors on these (short to truncated).
CHECK_TEXTS = (
    "What is makemore?",
    "Why do we use batch normalization in deep networks, and what does it do at test time?",
    "hi",
    "The loss goes down; the gradient flows back through tanh. " * 20,
)
FP32_AGREEMENT = 0.9999  # least cosine to the torch vector a float32 export may show
# What the export writes (two models and their scratch copy), for a disk-full message.
EXPORT_BYTES = 300 << 20
# How the child process marks the one line of a StorageError on stderr, for its parent.
STORAGE_MARK = "kgpt-storage-error: "


class ExportError(KgptError, RuntimeError):
    """The ONNX export failed; the message says what to do."""


def model_hash(source: Path) -> str:
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        digest.update(name.encode() + b"\0")
        with open(source / name, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


def export_dir(cache_dir: Path, source: Path | None = None) -> Path:
    return (
        cache_dir / f"minilm-{_remembered_hash(cache_dir, source or model_dir())}-v{EXPORT_VERSION}"
    )


def _remembered_hash(cache_dir: Path, source: Path) -> str:
    """``model_hash``, remembered by the files' size and modification time: reading the 90 MB
    of weights at every start would cost a warm start ~0.1 s."""
    stats = [(source / name).stat() for name in MODEL_FILES]
    stamp = f"{source}|" + "|".join(f"{st.st_size}:{st.st_mtime_ns}" for st in stats)
    memo = cache_dir / HASH_MEMO  # {stamp: hash}, one per model (packaged, adapted)
    try:
        remembered = json.loads(memo.read_text())
        remembered = remembered if isinstance(remembered, dict) else {}
    except (OSError, ValueError):
        remembered = {}
    if isinstance(remembered.get(stamp), str):
        return remembered[stamp]
    digest = model_hash(source)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps({**remembered, stamp: digest}))
        os.replace(tmp, memo)
    except OSError:  # a read-only cache folder: the hash is recomputed next time
        pass
    return digest


def onnx_model(cache_dir: Path, quantized: bool, source: Path | None = None) -> Path:
    """The ONNX file of the packaged model (or of the sentence-transformers folder ``source``,
    an adapted one), exported in a child process if not there yet."""
    folder = export_dir(cache_dir, source)
    if not (folder / READY_FILE).is_file():
        _export_in_child(cache_dir, source)
    return folder / (INT8_FILE if quantized else FP32_FILE)


def _export_in_child(cache_dir: Path, source: Path | None) -> None:
    started = time.perf_counter()
    log.info("exporting %s to ONNX under %s (once per model)", source or "MiniLM", cache_dir)
    cmd = [sys.executable, "-m", "karpathy_gpt.onnx_export", str(cache_dir)]
    if source is not None:
        cmd += ["--source", str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or [""]
        if last[0].startswith(STORAGE_MARK):  # the child could not write: its one line
            raise StorageError(last[0].removeprefix(STORAGE_MARK))
        raise ExportError(
            f"exporting the embedding model to ONNX failed:\n{result.stderr[-2000:]}\n"
            "Set KGPT_EMBEDDING_BACKEND=torch to run without ONNX, or fix the error above."
        )
    log.info("ONNX export ready in %.1fs", time.perf_counter() - started)


def export(cache_dir: Path, source: Path | None = None) -> Path:
    """Export, fuse, check and quantise the model into its folder (needs torch)."""
    source = source or model_dir()
    final = export_dir(cache_dir, source)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / READY_FILE).is_file():  # another process exported it while we waited
            return final
        tmp = cache_dir / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            traced = tmp / "traced.onnx"
            _trace(source, traced)
            _fuse(traced, tmp / FP32_FILE)
            traced.unlink()
            agreement = _check(source, tmp / FP32_FILE)
            _quantise(tmp / FP32_FILE, tmp / INT8_FILE)
            meta = {
                "model": str(source),
                "model_hash": final.name.split("-")[1],
                "export_version": EXPORT_VERSION,
                "fp32_least_cosine_to_torch": round(agreement, 6),
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            with open(tmp / READY_FILE, "w") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            if final.exists():  # a folder without export.json: an interrupted older export
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _trace(source: Path, out: Path) -> None:
    """torch.onnx's TorchScript exporter on the eager-attention BERT: the graph pattern that
    onnxruntime's BERT optimizer fuses into its Attention kernel."""
    import warnings

    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(
        str(source), local_files_only=True, attn_implementation="eager"
    ).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # A padded example, so the traced graph keeps the attention mask in play.
    ids = torch.tensor([[101, 2054, 2003, 2191, 5974, 102], [101, 7632, 102, 0, 0, 0]])
    mask = (ids > 0).long()
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            LastHiddenState(bert),
            (ids, mask, torch.zeros_like(ids)),
            str(out),
            dynamo=False,
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
        )


def _fuse(traced: Path, out: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(traced), model_type="bert", num_heads=12, hidden_size=384)
    stats = fused.get_fused_operator_statistics()
    if not stats.get("Attention"):
        log.warning("onnxruntime fused no attention layers (%s): the model runs slower", stats)
    fused.save_model_to_file(str(out))


def _check(source: Path, onnx_path: Path) -> float:
    """Least cosine between the ONNX and sentence-transformers vectors of CHECK_TEXTS."""
    from sentence_transformers import SentenceTransformer

    from .onnx_engine import OnnxEngine

    reference = SentenceTransformer(str(source), device="cpu", local_files_only=True).encode(
        list(CHECK_TEXTS), normalize_embeddings=True, convert_to_numpy=True
    )
    vectors = OnnxEngine(onnx_path, threads=1).encode(list(CHECK_TEXTS))  # lengths all differ
    agreement = float((vectors * reference).sum(1).min())
    if agreement < FP32_AGREEMENT:
        raise ExportError(
            f"the ONNX export disagrees with sentence-transformers (cosine {agreement:.5f}); "
            "use KGPT_EMBEDDING_BACKEND=torch"
        )
    return agreement


def _quantise(fp32: Path, out: Path) -> None:
    """int8 weights per output channel for the matrix products (embeddings stay float32):
    per-tensor scales cost ~5% cosine to the float vectors, per-channel ones under 1%."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32,
        out,
        op_types_to_quantize=["MatMul", "Attention"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--source", type=Path, help="a sentence-transformers folder to export")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        with writing(
            args.cache_dir, "the ONNX export of the model", "KGPT_MODEL_DIR", EXPORT_BYTES
        ):
            print(export(args.cache_dir, args.source))
    except StorageError as exc:
        print(STORAGE_MARK + str(exc), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
