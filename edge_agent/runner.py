"""`edgecloud edge run`: stream a raw-pixel test split through the agent and record every answer.

Output format, one line per sample, chosen by the file's suffix:
- `.tsv`: a header line `index<TAB>label<TAB>target<TAB>source<TAB>fallback_reason`, then one row each;
- anything else (`.jsonl` recommended): JSON lines
  `{"index": 0, "label": 7, "target": 7, "source": "cloud", "fallback_reason": ""}`.
`label` is the agent's answer, `target` the dataset's label, `fallback_reason` empty unless the
source is `edge-fallback`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from edge_agent.agent import Answers, EdgeAgent
from shared.names import Strategy

TSV_HEADER = "index\tlabel\ttarget\tsource\tfallback_reason\n"


@dataclass(frozen=True)
class RunSummary:
    samples: int
    answered: int
    correct: int
    runtime_s: float
    by_source: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    @property
    def throughput(self) -> float:
        """Samples answered per second of wall time."""
        return self.answered / self.runtime_s if self.runtime_s > 0 else 0.0

    def format(self) -> str:
        lines = [f"samples   {self.samples}", f"answered  {self.answered}", f"accuracy  {self.accuracy:.4f}",
                 f"runtime   {self.runtime_s:.2f} s ({self.throughput:.0f} samples/s)",
                 "by source " + (", ".join(f"{k}={v}" for k, v in sorted(self.by_source.items())) or "-"),
                 "fallbacks " + (", ".join(f"{k}={v}" for k, v in sorted(self.fallbacks.items())) or "-")]
        return "\n".join(lines)


def batches(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """(N, C, H, W) -> consecutive (<= batch_size, C, H, W) views, in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size]


def _write(sink: TextIO, answers: Answers, targets: np.ndarray, first: int, tsv: bool) -> None:
    # Sources and reasons are fixed ASCII words, so plain formatting is valid JSON and 5x faster than json.dumps.
    rows = zip(answers.labels.tolist(), targets.tolist(), answers.sources, answers.reasons, strict=True)
    if tsv:
        sink.writelines(f"{first + i}\t{label}\t{target}\t{source}\t{reason}\n"
                        for i, (label, target, source, reason) in enumerate(rows))
    else:
        sink.writelines(f'{{"index": {first + i}, "label": {label}, "target": {target}, "source": "{source}", '
                        f'"fallback_reason": "{reason}"}}\n' for i, (label, target, source, reason) in enumerate(rows))


async def run_split(agent: EdgeAgent, x: np.ndarray, y: np.ndarray, *, batch_size: int,
                    sink: TextIO | None = None, tsv: bool = False, strategy: str = Strategy.COOPERATION,
                    on_batch: Callable[[int], None] | None = None) -> RunSummary:
    """Stream `x` (raw pixels) through `agent` in batches; write each answer to `sink`; summarise."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
    if sink is not None and tsv:
        sink.write(TSV_HEADER)
    by_source: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    answered = correct = 0
    started = time.perf_counter()
    async for answers in agent.stream(batches(x, batch_size), strategy=strategy):
        targets = y[answered:answered + len(answers)]
        correct += int((answers.labels == targets).sum())
        by_source.update(answers.sources.tolist())
        reasons = answers.reasons[answers.reasons != ""]
        if len(reasons):
            fallbacks.update(reasons.tolist())
        if sink is not None:
            _write(sink, answers, targets, answered, tsv)
        answered += len(answers)
        if on_batch is not None:
            on_batch(len(answers))
    return RunSummary(samples=len(x), answered=answered, correct=correct, runtime_s=time.perf_counter() - started,
                      by_source=dict(by_source), fallbacks=dict(fallbacks))


async def run_to_file(agent: EdgeAgent, x: np.ndarray, y: np.ndarray, out: Path, *, batch_size: int,
                      strategy: str = Strategy.COOPERATION, on_batch: Callable[[int], None] | None = None
                      ) -> RunSummary:
    """`run_split` writing to `out` (TSV when it ends in .tsv, else JSON lines)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as sink:
        return await run_split(agent, x, y, batch_size=batch_size, sink=sink, tsv=out.suffix.lower() == ".tsv",
                               strategy=strategy, on_batch=on_batch)
