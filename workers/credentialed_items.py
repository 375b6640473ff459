"""Running a chunk's items each with the credentials its caller brought (if any).

Items are grouped by credentials and each group runs through the chunk's
:class:`~workers.items.ItemRunner` with a gateway that calls with them
(:func:`workers.credentialed_client.with_credentials`); items without any run as usual.
When the job's credentials are gone (its record expired) or cannot be decrypted, its items
fail: they never fall back to the deployment's own key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from batchgate.errors import BatchgateError, RequestError
from schedulers.journey import Journey
from workers.client_credentials import ClientCredentials
from workers.credentialed_client import with_credentials
from workers.credentials_store import CredentialStore
from workers.items import Deferral, ItemRunner, failed
from workers.jobs import Item, Job
from workers.runtime import Runtime

MARKER = "client_credentials"
"""The job record field saying its items call with their callers' credentials."""


def _merge(first: Deferral | None, second: Deferral | None) -> Deferral | None:
    """One deferral for the chunk: the soonest delay (a group that must wait longer just
    defers again), every waiting item's journey."""
    if first is None or second is None:
        return first or second
    return Deferral(min(first.delay, second.delay), {**first.journeys, **second.journeys})


def run_items(runtime: Runtime, job: Job, runner: ItemRunner, pending: Sequence[Item],
              saved: Mapping[int, Journey]) -> Deferral | None:
    """``runner.run(pending, saved)``, each item with its own caller's credentials."""
    if job.get(MARKER) != "1":
        return runner.run(pending, saved)
    store = CredentialStore(runtime.redis, runtime.keys, runtime.secretbox)
    try:
        loaded = store.load(job.id, [item.index for item in pending])
    except BatchgateError as exc:
        runner.record([failed(item, exc) for item in pending])
        return None
    if loaded is None:
        gone = RequestError("The client-side credentials of this job are no longer kept "
                            "(they expire with its completion window).",
                            code="client_credentials_expired")
        runner.record([failed(item, gone) for item in pending])
        return None
    groups: dict[ClientCredentials | None, list[Item]] = {}
    for item in pending:
        groups.setdefault(loaded.get(item.index), []).append(item)
    deferral: Deferral | None = None
    for credentials, items in groups.items():
        one = copy.copy(runner)
        one.gateway = with_credentials(runner.gateway, credentials)
        deferral = _merge(deferral, one.run(items, saved))
    return deferral
