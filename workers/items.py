"""Running a chunk's items through the gateway: one by one, or packed when they are embeddings.

Each item walks its own :class:`~schedulers.journey.Journey` (saved between runs when the
item had to wait). Embedding items with the same journey, group and parameters share upstream
requests, up to the group's input and token limits, and get their vectors back in order; an
input no deployment of the group could ever take fails alone, before anything is sent, and is
never retried. When one item has to wait longer than a moment, the rest of the chunk waits
with it: the chunk goes back to the broker with that delay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchgate.errors import BatchgateError, RequestError, UpstreamError
from config.settings import Deployment
from schedulers.fallbacks import RoutingOptions
from schedulers.journey import Journey
from schedulers.packing import PackLimits, limits_for, merged_body, pack, packable, split_response
from schedulers.packing import too_large as too_large_reason
from schedulers.principal import Principal
from schedulers.state import Priority
from schedulers.tokens import input_tokens
from workers.answers import Answer, error_answer
from workers.gateway import Deferred, Gateway
from workers.jobs import Item, Outcome, item_result, stopped_error

INLINE_WAIT = {Priority.INTERACTIVE: 1.0, Priority.BULK: 0.1}
"""Seconds an item may wait inside its worker slot; a longer wait goes back to the broker
(cheaper than a broker round trip for a short wait, and a slot is never held for long)."""
EMBEDDINGS = "embeddings"
TPM_SHARE_PER_PACK = 20
"""A pack holds at most 1/20 of the smallest declared tpm of its group."""

NO_OPTIONS = RoutingOptions(fallbacks=None, disabled=False)
Finished = tuple[int, Outcome, str]
Record = Callable[[list[Finished]], None]


@dataclass(frozen=True, slots=True)
class Deferral:
    """Items to run again after ``delay`` seconds, with their journeys so far."""

    delay: float
    journeys: dict[int, Journey]


def result_of(item: Item, answer: Answer, body: Any = None) -> Finished:
    """An item's stored result from its answer (``body``: the decoded answer, if at hand)."""
    deployment = answer.deployment.id if answer.deployment else None
    if body is None:
        try:
            body = json.loads(answer.body)
        except ValueError:
            body = {"error": {"message": answer.body[:500].decode("utf-8", "replace"),
                              "type": "upstream_error", "param": None, "code": None}}
    outcome = Outcome.COMPLETED if answer.ok else Outcome.FAILED
    error = None
    if not answer.ok:
        error = (body.get("error") if isinstance(body, dict) else None) or {"message": str(body)}
    return item.index, outcome, item_result(
        item, outcome, status_code=answer.status, body=body if answer.ok else None,
        error=error, deployment=deployment, finished_at=time.time(),
        attempts=answer.attempts, fallback=answer.fallback)


def stopped(item: Item, outcome: Outcome) -> Finished:
    """The result of an item its job's cancel or expiry reached before it ran."""
    return item.index, outcome, item_result(item, outcome, status_code=None,
                                            error=stopped_error(outcome),
                                            finished_at=time.time())


def failed(item: Item, error: BatchgateError) -> Finished:
    """An item that failed before or without an upstream answer."""
    return result_of(item, error_answer(item.model, error))


class ItemRunner:
    """Runs the pending items of one chunk; calls ``record`` as results come in."""

    def __init__(self, gateway: Gateway, endpoint: str, priority: Priority,
                 record: Record, *, stopping: Callable[[], Outcome | None],
                 principal: Principal | None = None) -> None:
        self.gateway = gateway
        self.principal = principal
        self.stopping = stopping
        self.endpoint = endpoint
        self.priority = priority
        self.record = record
        self.patience = INLINE_WAIT[priority]

    def run(self, items: Sequence[Item], saved: Mapping[int, Journey]) -> Deferral | None:
        """Run ``items``; the deferral of those that must wait, if any."""
        journeys = {i.index: saved.get(i.index) or Journey.start(i.model) for i in items}
        deferral: Deferral | None = None
        for batch in self._batches(items, journeys):
            stop = self.stopping() if deferral is None else None
            if stop is not None:
                # Cancelled or expired meanwhile: what has not run gets the stop outcome.
                self.record([stopped(i, stop) for i in batch])
                continue
            if deferral is not None:
                deferral.journeys.update({i.index: journeys[i.index] for i in batch})
                continue
            deferral = self._run_batch(batch, journeys[batch[0].index])
        return deferral

    def _batches(self, items: Sequence[Item],
                 journeys: Mapping[int, Journey]) -> list[list[Item]]:
        """Items grouped for packing (embeddings with one journey and the same parameters),
        every other item alone, in first-appearance order."""
        groups: dict[str, list[Item]] = {}
        out: list[list[Item]] = []
        for item in items:
            if self.endpoint != EMBEDDINGS or not packable(item.body):
                out.append([item])
                continue
            params = {k: v for k, v in item.body.items() if k != "input"}
            key = journeys[item.index].dump() + json.dumps(params, sort_keys=True)
            if key not in groups:
                groups[key] = []
                out.append(groups[key])
            groups[key].append(item)
        return out

    def _run_batch(self, batch: list[Item], journey: Journey) -> Deferral | None:
        if len(batch) == 1 and (self.endpoint != EMBEDDINGS or not packable(batch[0].body)):
            return self._run_single(batch[0], journey)
        return self._run_packed(batch, journey)

    def _run_single(self, item: Item, journey: Journey) -> Deferral | None:
        try:
            body, options = self.gateway.options(item.body)
            result = self.gateway.run(journey, self.endpoint, body, options,
                                      priority=self.priority, patience=self.patience,
                                      defer=True, principal=self.principal)
        except BatchgateError as exc:
            self.record([failed(item, exc)])
            return None
        if isinstance(result, Deferred):
            return Deferral(result.delay, {item.index: result.journey})
        assert isinstance(result, Answer)  # no streams in the queue
        self.record([result_of(item, result)])
        return None

    def _limits(self, group: str) -> tuple[PackLimits, int | None]:
        """What one item may never exceed (the strictest deployment of the group: a pack
        must fit whichever takes it; tpm counts as a per-request token limit), and the token
        size packs are filled to."""
        deployments: Sequence[Deployment] = self.gateway.scheduler.group(group)
        each = [limits_for(d) for d in deployments]
        caps = [lim.max_tokens for lim in each if lim.max_tokens is not None]
        caps += [d.tpm for d in deployments if d.tpm]
        limits = PackLimits(
            max_inputs=min(lim.max_inputs for lim in each),
            max_tokens=min(caps) if caps else None,
            max_input_tokens=min((lim.max_input_tokens for lim in each
                                  if lim.max_input_tokens is not None), default=None))
        # Where tpm is declared a pack stays a small share of it, so budget frees up for the
        # next pack (and for interactive callers) in steps, not in one minute-sized lump.
        fill = [c for c in [limits.max_tokens] if c is not None]
        fill += [max(1, d.tpm // TPM_SHARE_PER_PACK) for d in deployments if d.tpm]
        return limits, min(fill) if fill else None

    def _run_packed(self, batch: list[Item], journey: Journey) -> Deferral | None:
        limits, fill = self._limits(journey.group)
        sizes: list[tuple[int, int]] = []
        sendable: list[Item] = []
        rejected: list[Finished] = []
        for item in batch:
            per_input = input_tokens(item.body.get("input"))
            reason = too_large_reason(len(per_input), sum(per_input), per_input, limits)
            if reason is not None:
                rejected.append(failed(item, RequestError(reason, param="input",
                                                          code="input_too_large")))
                continue
            sendable.append(item)
            sizes.append((len(per_input), sum(per_input)))
        if rejected:
            self.record(rejected)
        packs = pack(sizes, max_inputs=limits.max_inputs, max_tokens=fill)
        for n, one in enumerate(packs):
            members = [sendable[i] for i in one.indexes]
            deferral = self._send_pack(members, [sizes[i] for i in one.indexes], journey,
                                       one.tokens)
            if deferral is not None:
                for later in packs[n + 1:]:
                    deferral.journeys.update({sendable[i].index: journey for i in later.indexes})
                return deferral
        return None

    def _send_pack(self, members: list[Item], sizes: list[tuple[int, int]], journey: Journey,
                   tokens: int) -> Deferral | None:
        body = merged_body([m.body for m in members])
        try:
            result = self.gateway.run(journey, EMBEDDINGS, body, NO_OPTIONS,
                                      priority=self.priority, patience=self.patience,
                                      defer=True, tokens=tokens, principal=self.principal)
        except BatchgateError as exc:
            self.record([failed(m, exc) for m in members])
            return None
        if isinstance(result, Deferred):
            return Deferral(result.delay, {m.index: result.journey for m in members})
        assert isinstance(result, Answer)  # no streams in the queue
        if result.ok:
            try:
                parts = split_response(json.loads(result.body), [n for n, _ in sizes],
                                       [t for _, t in sizes])
            except (ValueError, KeyError, TypeError, AttributeError):
                error = UpstreamError(f"{len(members)} inputs were sent but the upstream's "
                                      "answer did not hold one embedding for each",
                                      code="upstream_bad_response")
                self.record([failed(m, error) for m in members])
                return None
            self.record([result_of(m, result, part)
                         for m, part in zip(members, parts, strict=True)])
            return None
        if len(members) > 1 and 400 <= result.status < 500 and result.status != 429:
            # One input spoiled the whole request: send each alone, so only that one fails.
            return self._run_alone(members)
        self.record([result_of(m, result) for m in members])
        return None

    def _run_alone(self, members: list[Item]) -> Deferral | None:
        deferral: Deferral | None = None
        for item in members:
            if deferral is not None:
                deferral.journeys[item.index] = Journey.start(item.model)
                continue
            deferral = self._run_single(item, Journey.start(item.model))
        return deferral
