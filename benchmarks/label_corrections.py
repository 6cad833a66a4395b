"""Write a corrected copy of the public labelled questions, to score the served ranking on it.

The public labels (``../shared/eval/questions.jsonl``, read-only here) are not changed and not
copied into the repo: this writes a copy with the corrections below to ``--out`` (default
``/tmp/corrected-questions.jsonl``), applied in memory and each checked to apply to exactly one
question, so the figures on it can be reproduced:

    .venv/bin/python benchmarks/label_corrections.py
    .venv/bin/karpathy-gpt eval --questions /tmp/corrected-questions.jsonl [--cv --compare]

``--only contradiction`` applies only the first correction: the one `karpathy-gpt eval`'s label
check finds by itself (an accepted lecture no passage of which can match the evidence). The
second is a reading of the transcripts, and is marked as such.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from karpathy_gpt.evaluation import DEFAULT_QUESTIONS

CORRECTIONS = [
    {
        "kind": "contradiction",
        "question": "How does cross entropy relate to negative log likelihood?",
        "field": "evidence",
        "value": r"cross.?entropy|negative log likelihood",
        "why": "The label accepts lecture 02, which teaches the negative log likelihood and never "
        "says 'cross entropy', so with the evidence /cross.entropy/ no lecture-02 passage can be "
        "a hit (eval's label check). Whisper also writes lecture 03's F.cross_entropy as "
        "'crossentropy', which /cross.entropy/ rejects.",
    },
    {
        "kind": "reading",
        "question": "What is the problem with the Bigram model's context window?",
        "field": "lectures",
        "value": ["07", "02", "03"],
        "why": "Lecture 03 opens with exactly this: 'The problem with this model ... you only take "
        "one character of context ... [the table] grows exponentially with the length of the "
        "context'. Its first hit with lecture 03 accepted is still a passage that says 'bigram' "
        "(the opening calls it 'this model').",
    },
]


def corrected(rows: list[dict], kinds: set[str]) -> list[dict]:
    for correction in CORRECTIONS:
        if correction["kind"] not in kinds:
            continue
        matching = [r for r in rows if r["question"] == correction["question"]]
        if len(matching) != 1:
            raise SystemExit(f"{correction['question']!r} is in the labels {len(matching)} times")
        matching[0][correction["field"]] = correction["value"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/corrected-questions.jsonl"))
    parser.add_argument("--only", choices=["contradiction", "reading"], action="append")
    args = parser.parse_args()
    kinds = set(args.only or ["contradiction", "reading"])
    lines = args.questions.read_text(encoding="utf-8").splitlines()
    rows = corrected([json.loads(line) for line in lines if line.strip()], kinds)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for c in CORRECTIONS:
        if c["kind"] in kinds:
            print(f"{c['kind']}: {c['question']}\n  {c['field']} -> {c['value']}\n  {c['why']}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
