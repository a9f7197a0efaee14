"""Names that cross modules or the wire, defined once (docs/architecture.md: "Names on the wire").

Each is a `StrEnum`, so a member *is* its wire string: it can be compared with, written to JSON
and used as a Prometheus label as it is, and a typo in code is an AttributeError at import time
rather than a series nobody scrapes.
"""

from __future__ import annotations

from enum import StrEnum


class ModelRole(StrEnum):
    """What a model in a bundle is for; the manifest lists every model with one of these."""

    TEACHER = "teacher"        # the large model the cloud serves (Zhang et al. §III)
    STUDENT = "student"        # an RL-compressed, distilled model the edge runs, with its offloader
    VARIANT = "variant"        # another size/accuracy point for multi-tier orchestration
    SPLIT_HEAD = "split_head"  # input -> feature at a partition point (device side of a split)
    SPLIT_TAIL = "split_tail"  # feature at a partition point -> later exits (server side of a split)


class Strategy(StrEnum):
    """How the edge answers a batch: the paper's Table VII strategies."""

    COOPERATION = "cooperation"  # the offloader decides per sample
    EDGE_ONLY = "edge_only"      # the student answers everything
    CLOUD_ONLY = "cloud_only"    # the teacher answers everything


class AnswerSource(StrEnum):
    """Who produced an answer the edge returns."""

    EDGE = "edge"
    CLOUD = "cloud"
    FALLBACK = "edge-fallback"  # flagged for the cloud, answered by the student; a FallbackReason says why
    EDGE_SERVER = "edge-server"  # a shared edge server of the runtime (multi-tier orchestration)
    FUSED = "fused"             # offloaded, answered from the student's and teacher's probabilities (fusion)


class FallbackReason(StrEnum):
    """Why a sample flagged complex was answered by the student instead."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    OVERLOADED = "overloaded"
    CIRCUIT_OPEN = "circuit_open"
    BAD_RESPONSE = "bad_response"
    UNAUTHORIZED = "unauthorized"
    LOCAL_FIRST = "local_first"  # a hedged request (splitting/actions.py): the device's own pass answered first


class Tier(StrEnum):
    """Where an orchestrated request runs (Shahhosseini et al.'s end-edge-cloud tiers).

    `end` is the device the request starts on (our edge agent, AnswerSource.EDGE); `edge` is a
    server of the runtime shared by the devices near it (AnswerSource.EDGE_SERVER); `cloud` is
    the far server (AnswerSource.CLOUD).
    """

    END = "end"
    EDGE = "edge"
    CLOUD = "cloud"
