"""What ``karpathy-gpt eval`` prints (or writes as JSON) from a ``run.Measured``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.console import Console

from .fit import Judged
from .metrics import Found, by_type, interval, paired, summary

METRICS = ("hit@2400", "hit@4500", "hit@1", "mrr@10")


def rows_of(measured) -> dict[str, list[Found]]:
    out = {"served": [j.found for j in measured.served]}
    if measured.cv is not None:
        out["cross-validated"] = [j.found for j in measured.cv]
    out.update(measured.baselines)
    return out


def curve(on: Sequence[Judged], off: Sequence[Judged], points: int = 9) -> list[dict]:
    """Refused shares of on-topic and off-topic questions as the threshold moves."""
    scores = np.array([j.offtopic for j in on] + [j.offtopic for j in off])
    out = []
    for t in np.unique(np.quantile(scores, np.linspace(0.05, 0.95, points))):
        out.append(
            {
                "threshold": round(float(t), 3),
                "on_topic_refused": float(np.mean([j.offtopic >= t for j in on])),
                "off_topic_refused": float(np.mean([j.offtopic >= t for j in off])),
            }
        )
    return out


def answers(judged: Sequence[Judged], off: Sequence[Judged]) -> dict:
    held = [float(bool(j.holds)) for j in judged]
    return {
        "evidence_held": interval(held),
        "on_topic_refused": interval([float(j.refused) for j in judged]),
        "off_topic_refused": interval([float(j.refused) for j in off]) if off else None,
        "by_type": by_type([j.type for j in judged], held),
        "off_by_type": by_type([j.type for j in off], [float(j.refused) for j in off]),
        "longest": max((len(j.answer) for j in judged), default=0),
    }


def by_source(measured) -> dict:
    """Each row's figures on each question file, and the answers' on the main row."""
    _, main, _ = measured.main
    sources = [q.source for q in measured.labelled]
    out: dict[str, dict] = {}
    for source in dict.fromkeys(sources):
        mine = [i for i, s in enumerate(sources) if s == source]
        figures = {
            name: {
                "hit@2400": vars(interval([float(found[i].within[2400]) for i in mine])),
                "hit@1": vars(interval([float(found[i].rank == 1) for i in mine])),
            }
            for name, found in rows_of(measured).items()
        }
        figures["answers"] = vars(interval([float(bool(main[i].holds)) for i in mine]))
        out[source] = figures
    return out


def as_json(measured) -> dict:
    rows = rows_of(measured)
    served = [j.found for j in measured.served]
    _, main, main_off = measured.main
    ranks = [f.rank for f in served]
    return {
        "questions": len(served),
        "hit@1": sum(r == 1 for r in ranks),
        "hit@3": sum(r is not None and r <= 3 for r in ranks),
        "mrr@10": round(sum(1 / r for r in ranks if r) / max(len(ranks), 1), 4),
        "ranks": ranks,
        "in_sample": measured.in_sample,
        "retrieval": {
            name: {m: vars(e) for m, e in summary(found).items()} for name, found in rows.items()
        },
        "answers": {
            "answerer": measured.main_answerer,
            **{
                k: (vars(v) if hasattr(v, "mean") else v)
                for k, v in answers(main, main_off).items()
            },
        },
        "by_file": by_source(measured),
        "refusal_curve": curve(main, main_off) if main_off else [],
        "label_problems": [vars(p) for p in measured.label_problems],
    }


def show(measured, console: Console) -> None:
    n, m = len(measured.served), len(measured.served_off)
    console.print(f"[bold]{n} labelled questions, {m} off-topic; answerer {measured.answerer}[/]")
    if measured.in_sample:
        console.print(
            f"[yellow]{measured.in_sample} of them were used to fit the served ranker and refusal "
            "(which reads the questions it was fitted on): the served figures on them are not "
            "evidence (see the cross-validated ones: --cv)[/]",
            soft_wrap=True,
        )
    rows = rows_of(measured)
    console.print("\n[bold]Retrieval[/] (mean [95% interval])")
    console.print(f"{'':16}" + "".join(f"{m:>21}" for m in METRICS), soft_wrap=True)
    for name, found in rows.items():
        s = summary(found)
        line = f"{name:16}" + "".join(f"{s[m].percent():>21}" for m in METRICS)
        console.print(line, soft_wrap=True, highlight=False)
    main_name, main, main_off = measured.main
    for name in measured.baselines:
        for metric in ("hit@2400", "hit@1"):
            a = [f.metrics()[metric] for f in rows[main_name]]
            b = [f.metrics()[metric] for f in rows[name]]
            p = paired(a, b)
            d = p.difference
            console.print(
                f"{main_name} vs {name}, {metric}: won {p.won}, lost {p.lost}, "
                f"{100 * d.mean:+.1f} points [{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
                soft_wrap=True,
                highlight=False,
            )
    sources = [q.source for q in measured.labelled]
    if len(set(sources)) > 1:
        console.print("by file: hit@2400 / hit@1 (answers: evidence held)")
        for source in dict.fromkeys(sources):
            mine = [i for i, s in enumerate(sources) if s == source]
            cells = []
            for name, found in rows.items():
                hit = np.mean([found[i].within[2400] for i in mine])
                first = np.mean([found[i].rank == 1 for i in mine])
                cells.append(f"{name} {100 * hit:.1f}/{100 * first:.1f}")
            held = np.mean([bool(main[i].holds) for i in mine])
            console.print(
                f"  {source} (n={len(mine)}): " + ", ".join(cells) + f"; answers {100 * held:.1f}",
                soft_wrap=True,
                highlight=False,
            )
    types = by_type([j.type for j in main], [j.found.within[2400] for j in main])
    console.print(
        f"{main_name} hit@2400 by type: "
        + ", ".join(f"{t} {h}/{k}" for t, (h, k) in types.items()),
        soft_wrap=True,
    )
    a = answers(main, main_off)
    console.print(f"\n[bold]Answers[/] ({main_name}, {measured.main_answerer})")
    console.print(f"evidence in the first 800 characters  {a['evidence_held'].percent()}")
    console.print(f"on-topic questions refused            {a['on_topic_refused'].percent()}")
    if a["off_topic_refused"] is not None:
        console.print(f"off-topic questions refused           {a['off_topic_refused'].percent()}")
        console.print(
            "off-topic refused by type: "
            + ", ".join(f"{t} {h}/{k}" for t, (h, k) in a["off_by_type"].items())
        )
    console.print(
        "evidence held by type: " + ", ".join(f"{t} {h}/{k}" for t, (h, k) in a["by_type"].items()),
        soft_wrap=True,
    )
    console.print(f"longest answer: {a['longest']} characters")
    if main_off:
        console.print("\n[bold]Refusal curve[/] (threshold: on-topic refused, off-topic refused)")
        for point in curve(main, main_off):
            console.print(
                f"  {point['threshold']:.3f}: {100 * point['on_topic_refused']:5.1f}%  "
                f"{100 * point['off_topic_refused']:5.1f}%"
            )
        console.print(
            f"  chosen: {100 * np.mean([j.refused for j in main]):5.1f}%  "
            f"{100 * np.mean([j.refused for j in main_off]):5.1f}%"
        )
