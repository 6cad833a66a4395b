"""Adapting the model to a corpus: which adapted model is reused, and a real (short) training
run whose model is exported and embeds like the packaged one."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
from support.corpus import MORE, SENTENCES, write_corpus

from karpathy_gpt.adaptation import (
    MIN_PASSAGES,
    READY_FILE,
    RECIPE,
    Recipe,
    adapt,
    adapted_dir,
    find_adapted,
    text_hashes,
)
from karpathy_gpt.config import Settings
from karpathy_gpt.embedding import Embedder, model_name
from karpathy_gpt.index.backend import ingest

PASSAGES = [
    f"{SENTENCES[n % 5]} {MORE[(n * 3) % 5]} This is passage {n}, with its own words."
    for n in range(MIN_PASSAGES + 20)
]


def trained_on(folder, passages, recipe: Recipe = RECIPE) -> None:
    """A folder as a finished training leaves it (only what reuse reads)."""
    folder.mkdir(parents=True)
    ready = {"passages": text_hashes(passages), "recipe": asdict(recipe)}
    (folder / READY_FILE).write_text(json.dumps(ready))


def test_a_model_is_reused_for_its_own_corpus_and_one_that_changed_a_little(tmp_path):
    assert find_adapted(tmp_path, PASSAGES) is None
    trained_on(adapted_dir(tmp_path, PASSAGES), PASSAGES)
    assert find_adapted(tmp_path, PASSAGES) == adapted_dir(tmp_path, PASSAGES)
    edited = PASSAGES[:-20] + [p + " Edited." for p in PASSAGES[-20:]]  # ~9% changed
    assert find_adapted(tmp_path, edited) == adapted_dir(tmp_path, PASSAGES)
    half = len(PASSAGES) // 2
    rewritten = PASSAGES[:half] + [p + " New." for p in PASSAGES[half:]]
    assert find_adapted(tmp_path, rewritten) is None  # half of it is new: worth training again
    assert find_adapted(tmp_path, PASSAGES, Recipe(seed=1)) is None  # another recipe


def test_a_model_trained_with_the_question_bank_serves_the_corpus_edited_a_little(tmp_path):
    """An edit moves the bank's quotes, so the edited corpus has no pairs: the model trained
    with them is still the one reused."""
    with_bank = replace(RECIPE, bank="0123456789ab")
    trained_on(adapted_dir(tmp_path, PASSAGES, with_bank), PASSAGES, with_bank)
    edited = PASSAGES[:-20] + [p + " Edited." for p in PASSAGES[-20:]]
    assert find_adapted(tmp_path, edited) == adapted_dir(tmp_path, PASSAGES, with_bank)
    assert find_adapted(tmp_path, edited, replace(RECIPE, batch=8)) is None
    older = {k: v for k, v in asdict(RECIPE).items() if not k.startswith("bank")}
    (adapted_dir(tmp_path, PASSAGES, with_bank) / READY_FILE).write_text(
        json.dumps({"passages": text_hashes(PASSAGES), "recipe": older})
    )
    assert find_adapted(tmp_path, edited) is None  # a recipe from before the bank's stage


def test_a_corpus_too_small_to_learn_from_is_served_by_the_packaged_model(tmp_path, embedder):
    assert adapt(tmp_path / "models", PASSAGES[: MIN_PASSAGES - 1]) is None
    corpus = write_corpus(tmp_path / "corpus", {"one": " ".join(SENTENCES)})
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", model_dir=tmp_path / "m")
    result = ingest(settings)
    assert not result.embedder.adapted and result.embedder.name == model_name("onnx")
    result.store.close()


@pytest.mark.slow
def test_a_short_real_training_gives_a_model_that_embeds_through_onnx(tmp_path):
    steps = []
    recipe = Recipe(epochs=0.2, batch=8)
    folder = adapt(tmp_path, PASSAGES, lambda done, total: steps.append((done, total)), recipe)
    assert folder == adapted_dir(tmp_path, PASSAGES, recipe) and (folder / READY_FILE).is_file()
    assert steps[-1][0] == steps[-1][1] == int(0.2 * len(PASSAGES) / 8)
    assert not list(tmp_path.glob(".tmp-*"))  # the work folder is gone
    assert adapt(tmp_path, PASSAGES, recipe=recipe) == folder  # found, not trained again
    adapted = Embedder(backend="onnx", cache_dir=tmp_path, source=folder)
    packaged = Embedder(backend="onnx", cache_dir=tmp_path)
    assert adapted.adapted and folder.name in adapted.name and adapted.name != packaged.name
    text = "The learning rate sets how far each step moves the parameters."
    a, b = adapted.embed_one(text), packaged.embed_one(text)
    assert a.shape == b.shape and abs(np.linalg.norm(a) - 1) < 1e-5
    assert 0.5 < float(a @ b) < 0.99999  # moved by training, not replaced


@pytest.mark.slow
def test_the_question_banks_pairs_are_a_second_stage_kept_apart(tmp_path):
    """Trained on a bank's (question, passage) pairs after the passages: a model of its own,
    named by those pairs, whose progress counts both stages' steps."""
    recipe = Recipe(epochs=0.2, batch=8, bank_epochs=1.0)
    pairs = [(f"What does passage {n} say?", PASSAGES[n]) for n in range(16)]
    steps = []
    folder = adapt(tmp_path, PASSAGES, lambda d, t: steps.append((d, t)), recipe, pairs=pairs)
    cloze, bank = int(0.2 * len(PASSAGES) / 8), 16 // 8
    assert steps[-1] == (cloze + bank, cloze + bank)
    assert folder != adapted_dir(tmp_path, PASSAGES, recipe)  # not the model without the bank
    assert json.loads((folder / READY_FILE).read_text())["recipe"]["bank"]
    assert adapt(tmp_path, PASSAGES, recipe=recipe, pairs=pairs) == folder
