"""The embedding model adapted to one lecture series, without labels (inverse cloze), once.

all-MiniLM-L6-v2 was trained on web text; learners ask about the lectures in the lectures' own
vocabulary ("the bigram table", "bnvar_inv", "the kaiming init"), which the general model
weighs poorly. Inverse-cloze training teaches it the series: a sentence cut out of a passage is
a question-like query whose answer is the rest of that passage, and the model learns to find
that passage among the others of a batch (in-batch negatives, MultipleNegativesRanking loss).
No label and no other corpus is involved, so any lecture series can be adapted the same way.

Where the corpus has a question bank (``bank.py``: questions written from the transcripts,
each with the words that answer it), a second stage follows: the model learns to find, for
each bank question, the passage holding its answer, among the batch's other passages. These
are questions as learners word them, not sentences cut from the lectures; no evaluation
question is among them (docs/evaluation.md).

The adapted model is kept under ``KGPT_MODEL_DIR/adapted-<hash>-r<recipe>/`` (a
sentence-transformers folder plus ``adapted.json``, written last) and reused:

- for the same passages, always;
- for a corpus that changed a little (``REUSE_SHARE`` of its passages were trained on), too:
  a lecture edited or added does not pay for a new training run;
- ``KGPT_ADAPT=false`` skips it: the packaged model then serves.

Training runs in a child process (torch stays out of the server's memory) and prints
``step N/M`` lines, which become the progress shown by ingest.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .errors import KgptError
from .minilm import model_dir
from .text import sentence_spans

log = logging.getLogger(__name__)

READY_FILE = "adapted.json"
REUSE_SHARE = 0.8  # of the current passages an adapted model must have been trained on
# Fewer passages than this are too few to learn from (a test corpus, a single lecture): the
# packaged model serves them.
MIN_PASSAGES = 200


@dataclass(frozen=True)
class Recipe:
    """How the model is trained. Chosen by the cross-validated retrieval figures of
    BENCHMARKS.md (*Corpus adaptation*); a change of any field trains anew."""

    version: int = 1
    epochs: float = 2.0  # passes over the passages, one query sentence each time
    # Pairs per step: each query's negatives are the batch's other passages. 64 found the answer
    # more often than 32 for the same training time; 128, or more epochs, no more than 64.
    batch: int = 64
    learning_rate: float = 4e-5
    warmup: float = 0.1  # share of the steps with a rising learning rate
    remove: float = 0.9  # chance the query sentence is cut out of its passage
    scale: float = 20.0  # cosine -> logit, as sentence-transformers' MNRL loss
    min_query_chars: int = 30  # shorter sentences ("Okay.", "Right?") are no query
    max_tokens: int = 256  # the model's own window
    seed: int = 0
    # Forward and backward in bfloat16 where the CPU computes it natively (weights and the
    # optimiser stay float32): about two thirds of float32's step time here.
    bfloat16: bool = True
    # The question bank's stage: passes over its (question, passage) pairs, from a fresh
    # optimiser at this rate (batch, warmup and scale as above). 2 passes at 3e-5 found the
    # answer more often than 1 at 2e-5 or 3e-5.
    bank_epochs: float = 2.0
    bank_learning_rate: float = 3e-5
    bank: str = ""  # the digest of the pairs trained on ("": none, no second stage)

    def name(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


RECIPE = Recipe()


class AdaptationError(KgptError, RuntimeError):
    """Training the adapted model failed; the message says what to do."""


def text_hashes(passages: list[str]) -> list[str]:
    return sorted({hashlib.sha256(p.encode()).hexdigest()[:16] for p in passages})


def adapted_dir(cache_dir: Path, passages: list[str], recipe: Recipe = RECIPE) -> Path:
    digest = hashlib.sha256("\n".join(text_hashes(passages)).encode()).hexdigest()[:12]
    return cache_dir / f"adapted-{digest}-r{recipe.name()}"


def find_adapted(cache_dir: Path, passages: list[str], recipe: Recipe = RECIPE) -> Path | None:
    """An adapted model for ``passages``: trained on them, or on a corpus sharing at least
    ``REUSE_SHARE`` of them with the same recipe (the most similar one); None if none. The
    question bank's pairs may differ: a lecture edited a little no longer holds the bank's
    quotes where they were, but the model trained with them still knows the series."""
    exact = adapted_dir(cache_dir, passages, recipe)
    if (exact / READY_FILE).is_file():
        return exact
    wanted = set(text_hashes(passages))
    best, best_share = None, 0.0
    for folder in cache_dir.glob("adapted-*-r*"):
        try:
            ready = json.loads((folder / READY_FILE).read_text())
            trained = set(ready["passages"])
            if not _same_recipe(ready["recipe"], recipe):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        share = len(wanted & trained) / max(len(wanted), 1)
        if share > best_share:
            best, best_share = folder, share
    return best if best_share >= REUSE_SHARE else None


def _same_recipe(trained: dict, recipe: Recipe) -> bool:
    """Whether ``trained`` (a ready file's recipe) is ``recipe`` but for the bank's pairs (an
    older recipe, without a field of this one, is not)."""
    return {**trained, "bank": ""} == asdict(replace(recipe, bank=""))


def adapt(
    cache_dir: Path,
    passages: list[str],
    progress: Callable[[int, int], None] | None = None,
    recipe: Recipe = RECIPE,
    pairs: list[tuple[str, str]] = (),
) -> Path | None:
    """The adapted model for ``passages`` (normalised passage texts): found, or trained in a
    child process, which reports ``(step, steps)`` to ``progress``. ``pairs``: the question
    bank's (question, passage holding its answer), trained on after the passages. None for a
    corpus of fewer than ``MIN_PASSAGES`` passages. Processes adapting at once train once: the
    others wait for the first and find its model."""
    if pairs:
        digest = hashlib.sha256(json.dumps(sorted(pairs)).encode()).hexdigest()[:12]
        recipe = replace(recipe, bank=digest)
    if len(passages) < MIN_PASSAGES:
        log.info("%d passages: too few to adapt the model to; it serves as packaged", len(passages))
        return None
    found = find_adapted(cache_dir, passages, recipe)
    if found is not None:
        return found
    final = adapted_dir(cache_dir, passages, recipe)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".adapt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_adapted(cache_dir, passages, recipe)
        if found is not None:  # trained by another process while this one waited
            return found
        work = cache_dir / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            (work / "passages.json").write_text(json.dumps(passages), encoding="utf-8")
            (work / "recipe.json").write_text(json.dumps(asdict(recipe)), encoding="utf-8")
            (work / "pairs.json").write_text(json.dumps(list(pairs)), encoding="utf-8")
            _train_in_child(work, progress)
            if final.exists():  # an interrupted earlier run left it without its ready file
                shutil.rmtree(final)
            os.rename(work / "model", final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _train_in_child(work: Path, progress: Callable[[int, int], None] | None) -> None:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "karpathy_gpt.adaptation", str(work)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stderr is not None
    for line in child.stdout:
        if line.startswith("step ") and progress:
            done, total = line.split()[1].split("/")
            progress(int(done), int(total))
    errors = child.stderr.read()
    if child.wait() != 0:
        raise AdaptationError(
            f"adapting the embedding model to the corpus failed:\n{errors[-2000:]}\n"
            "Set KGPT_ADAPT=false to serve with the packaged model, or fix the error above."
        )
    log.info("adapted the embedding model to the corpus in %.0fs", time.perf_counter() - started)


# -- the child process: training (needs torch and sentence-transformers) ---------------------


def train(
    passages: list[str], out: Path, recipe: Recipe = RECIPE, bank: list[tuple[str, str]] = ()
) -> None:
    """Inverse-cloze fine-tuning of the packaged MiniLM on ``passages``, then on the question
    bank's ``bank`` pairs (question, passage); saved to ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(recipe.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    model = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)
    model.max_seq_length = recipe.max_tokens
    sentences = [[p[a:b] for a, b in sentence_spans(p)] for p in passages]
    usable = [i for i, s in enumerate(sentences) if len(s) > 1]
    steps = int(recipe.epochs * len(usable) / recipe.batch)
    if steps < 1:
        raise AdaptationError(f"{len(usable)} passages are too few to adapt the model to")
    bank_steps = int(recipe.bank_epochs * len(bank) / recipe.batch) if bank else 0

    def cloze(rng: random.Random) -> list[tuple[str, str]]:
        """One (query sentence, rest of its passage) pair per usable passage, shuffled."""
        out = []
        for i in rng.sample(usable, len(usable)):
            candidates = [j for j, s in enumerate(sentences[i]) if len(s) >= recipe.min_query_chars]
            if not candidates:
                continue
            j = rng.choice(candidates)
            rest = passages[i]
            if rng.random() < recipe.remove:
                rest = " ".join(s for n, s in enumerate(sentences[i]) if n != j)
            out.append((sentences[i][j], rest))
        return out

    def questions(rng: random.Random) -> list[tuple[str, str]]:
        return rng.sample(list(bank), len(bank))

    total = steps + bank_steps
    _stage(model, recipe, cloze, steps, recipe.learning_rate, 0, total)
    if bank_steps:
        torch.manual_seed(recipe.seed)
        _stage(model, recipe, questions, bank_steps, recipe.bank_learning_rate, steps, total)
    model.eval()
    model.save(str(out))
    meta = {
        "recipe": asdict(recipe),
        "base_model": str(model_dir()),
        "passages": text_hashes(passages),
        "steps": total,
        "bfloat16": _bfloat16(recipe),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(out / READY_FILE, "w") as f:  # last: a folder without it is incomplete
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())


def _bfloat16(recipe: Recipe) -> bool:
    """Whether training runs in bfloat16: where the recipe asks and the CPU computes it natively
    (elsewhere it is emulated, slower than float32)."""
    import torch

    native = torch.cpu.get_capabilities()
    return recipe.bfloat16 and bool(native.get("avx512_bf16") or native.get("amx_bf16"))


def _stage(model, recipe: Recipe, make_pairs, steps: int, rate: float, done: int, total: int):
    """``steps`` steps of in-batch-negatives training on ``make_pairs(rng)`` (query, passage)
    pairs, from a fresh optimiser: warmup, then a linear decay. A passage twice in a batch is
    not its own negative."""
    import torch

    rng = random.Random(recipe.seed)
    warmup = max(1, int(steps * recipe.warmup))
    optimizer = torch.optim.AdamW(model.parameters(), lr=rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / (steps - warmup)),
    )

    fast = _bfloat16(recipe)

    def encode(texts: list[str]):
        features = model.tokenize(texts)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            vectors = model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vectors.float(), dim=-1)

    model.train()
    step = 0
    while step < steps:
        pairs = make_pairs(rng)
        for start in range(0, len(pairs) - recipe.batch + 1, recipe.batch):
            if step >= steps:
                break
            batch = pairs[start : start + recipe.batch]
            answers = [a for _, a in batch]
            logits = recipe.scale * encode([q for q, _ in batch]) @ encode(answers).T
            same = torch.tensor([[a == b for b in answers] for a in answers])
            logits = logits.masked_fill(same & ~torch.eye(len(batch), dtype=torch.bool), -1e4)
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            print(f"step {done + step}/{total} loss {loss.item():.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="holds passages.json, recipe.json; model/ is made")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    passages = json.loads((args.work / "passages.json").read_text(encoding="utf-8"))
    recipe = Recipe(**json.loads((args.work / "recipe.json").read_text(encoding="utf-8")))
    pairs = [tuple(p) for p in json.loads((args.work / "pairs.json").read_text(encoding="utf-8"))]
    train(passages, args.work / "model", recipe, pairs)


if __name__ == "__main__":
    main()
