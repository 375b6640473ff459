"""Callers' own upstream credentials of a queued job, kept encrypted in Redis.

One hash per job (``Keys.credentials``): ``"*"`` holds the credentials every item uses,
an item index those of an inline batch request that brought its own. Each value is a Fernet
token made with the server key (the :class:`SecretBox` that also keeps webhook secrets), and
identical credentials share one token, so a 50,000-item batch with one key stores one value.
The clear values exist only in the API process that received them and in the worker that
calls with them, in memory, for the duration of the call: never in a Celery message (tasks
carry ids), never in the job record or an item, never in a log.

The hash is written in the transaction that creates the job (``JobStore.create``) and
deleted by the Lua script that ends it (``_end_job.lua``), with a TTL as a backstop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import redis

from batchgate.errors import BatchgateError
from config.keys import Keys
from workers.client_credentials import ClientCredentials, JobCredentials
from workers.webhooks.secretbox import SecretBox

JOB_WIDE = "*"


def seal(box: SecretBox, credentials: JobCredentials,
         origins: Sequence[int | None]) -> dict[str, str]:
    """The hash fields for a job whose item ``i`` came from batch request ``origins[i]``
    (None: not a batch): ``"*"`` for the job's own, an index for each item with its own."""
    tokens: dict[ClientCredentials, str] = {}

    def token(one: ClientCredentials) -> str:
        if one not in tokens:
            tokens[one] = box.encrypt(one.to_json())
        return tokens[one]

    fields: dict[str, str] = {}
    if credentials.default is not None:
        fields[JOB_WIDE] = token(credentials.default)
    for index, own in credentials.for_items(origins).items():
        if own != credentials.default:
            fields[str(index)] = token(own)
    return fields


class CredentialStore:
    """Reads a job's credentials back; ``client`` decodes responses to ``str``."""

    def __init__(self, client: redis.Redis, keys: Keys, box: SecretBox | None) -> None:
        self.redis = client
        self.keys = keys
        self.box = box

    def load(self, job_id: str, indexes: Sequence[int]
             ) -> Mapping[int, ClientCredentials | None] | None:
        """Item index -> the credentials it calls with (None: the deployment's own); None
        when the job's record is gone. Raises :class:`BatchgateError` when the server key
        cannot open it (no key, or rotated away)."""
        key = self.keys.credentials(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(key)
        pipe.hmget(key, [JOB_WIDE, *(str(i) for i in indexes)])
        exists, values = cast(list[object], pipe.execute())
        if not exists:
            return None
        if self.box is None:
            raise BatchgateError("client-side credentials cannot be decrypted: the server "
                                 "key (BATCHGATE_SECRET_KEY) is not set",
                                 code="client_credentials_unavailable")
        tokens = cast(list[str | None], values)
        opened: dict[str, ClientCredentials] = {}
        out: dict[int, ClientCredentials | None] = {}
        for index, token in zip(indexes, tokens[1:], strict=True):
            chosen = token or tokens[0]
            if chosen is None:
                out[index] = None
                continue
            if chosen not in opened:
                opened[chosen] = ClientCredentials.from_json(self.box.decrypt(chosen))
            out[index] = opened[chosen]
        return out
