"""Asyncio tasks nobody awaits: a hedged request's losing side (edge_agent/split.py, orchestration/agent.py)."""

from __future__ import annotations

import asyncio
from typing import Any


def retrieve(task: asyncio.Task[Any]) -> None:
    """Done callback of a task nobody awaits: read its outcome, so that an expected failure (a hedged
    upload timing out after the device answered) is not logged as "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()
