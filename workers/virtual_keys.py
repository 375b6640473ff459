"""Virtual keys (LiteLLM's ``/key/*``): stored by the SHA-256 of the key, never in clear.

A virtual key owns the jobs, batches and files made with it (owner ``key:<token>``), may be
limited to some model groups, and carries its own ``rpm_limit`` / ``tpm_limit`` /
``max_parallel_requests``, which the scheduler holds it to with the same budgets as
deployments (:mod:`schedulers.principal`). Its usage is counted per owner in Redis.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import redis

from batchgate.errors import AuthenticationError, ConflictError
from config.keys import Keys
from schedulers.principal import Principal
from workers.usage import Usage

KEY_PREFIX = "sk-"
KEY_BYTES = 32
OWNER_PREFIX = "key:"
LIMITS = ("rpm_limit", "tpm_limit", "max_parallel_requests")


def hash_key(clear: str) -> str:
    """The token a key is stored and owned by (what LiteLLM calls the key's ``token``)."""
    return hashlib.sha256(clear.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: ``sk-`` and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_name(clear: str) -> str:
    """How a key is shown after it was made: its prefix and last four characters."""
    return f"{clear[:3]}...{clear[-4:]}"


class KeyModelAccessError(AuthenticationError):
    """The key may not use this model (LiteLLM answers 401 ``key_model_access_denied``)."""

    code = "key_model_access_denied"


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A virtual key as stored (without the key itself)."""

    token: str
    key_name: str
    created_at: int
    key_alias: str | None = None
    models: tuple[str, ...] = ()
    """Model groups it may use; empty = every group."""
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    expires_at: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        """What its jobs, batches and files are owned by."""
        return OWNER_PREFIX + self.token

    @property
    def principal(self) -> Principal:
        """Its owner and limits, for the scheduler."""
        return Principal(self.owner, self.rpm_limit, self.tpm_limit,
                         self.max_parallel_requests)

    def expired(self, now: float) -> bool:
        """True from its expiry on."""
        return self.expires_at is not None and now >= self.expires_at

    def check_models(self, groups: Iterable[str]) -> None:
        """Raise :class:`KeyModelAccessError` when a group is not one it may use."""
        if not self.models:
            return
        for group in groups:
            if group not in self.models:
                raise KeyModelAccessError(
                    f"This key is not allowed to access model {group!r}. Allowed models: "
                    f"{', '.join(self.models)}.", param="model")

    def fields(self) -> dict[str, str]:
        """Its Redis hash."""
        out = {"token": self.token, "key_name": self.key_name,
               "created_at": str(self.created_at), "models": json.dumps(list(self.models)),
               "metadata": json.dumps(dict(self.metadata)),
               "key_alias": self.key_alias or "",
               "expires_at": "" if self.expires_at is None else str(self.expires_at)}
        for name in LIMITS:
            value = getattr(self, name)
            out[name] = "" if value is None else str(value)
        return out

    @classmethod
    def of_fields(cls, f: Mapping[str, str]) -> VirtualKey:
        """Read back from its Redis hash."""
        def opt(name: str) -> int | None:
            return int(f[name]) if f.get(name) else None

        return cls(token=f["token"], key_name=f["key_name"], created_at=int(f["created_at"]),
                   key_alias=f.get("key_alias") or None,
                   models=tuple(json.loads(f.get("models") or "[]")),
                   rpm_limit=opt("rpm_limit"), tpm_limit=opt("tpm_limit"),
                   max_parallel_requests=opt("max_parallel_requests"),
                   expires_at=opt("expires_at"), metadata=json.loads(f.get("metadata") or "{}"))

    def info(self, usage: Usage) -> dict[str, Any]:
        """The JSON view (``/key/info``), usage included; never the key itself."""
        return {"token": self.token, "key_name": self.key_name, "key_alias": self.key_alias,
                "models": list(self.models), "rpm_limit": self.rpm_limit,
                "tpm_limit": self.tpm_limit,
                "max_parallel_requests": self.max_parallel_requests,
                "expires": _iso(self.expires_at), "expires_at": self.expires_at,
                "metadata": dict(self.metadata), "created_at": self.created_at,
                "usage": usage.as_dict(), "spend": 0.0}


def _iso(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class KeyStore:
    """Virtual keys and per-owner usage in Redis (``redis`` must decode responses)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def create(self, spec: Mapping[str, Any], now: float) -> tuple[str, VirtualKey]:
        """Make a key from ``spec`` (the ``/key/generate`` fields); ``(clear key, record)``.
        The clear key is returned here only: it is never stored."""
        clear = spec.get("key") or new_key()
        duration = spec.get("duration")
        vkey = VirtualKey(
            token=hash_key(clear), key_name=key_name(clear), created_at=int(now),
            key_alias=spec.get("key_alias"), models=tuple(spec.get("models") or ()),
            rpm_limit=spec.get("rpm_limit"), tpm_limit=spec.get("tpm_limit"),
            max_parallel_requests=spec.get("max_parallel_requests"),
            expires_at=None if duration is None else int(now + duration),
            metadata=spec.get("metadata") or {})
        if vkey.key_alias and not self.redis.hsetnx(self.keys.key_aliases, vkey.key_alias,
                                                    vkey.token):
            raise ConflictError(f"A key with alias {vkey.key_alias!r} exists already.",
                                param="key_alias", code="key_alias_exists")
        if not self.redis.hsetnx(self.keys.virtual_key(vkey.token), "token", vkey.token):
            if vkey.key_alias:
                self.redis.hdel(self.keys.key_aliases, vkey.key_alias)
            raise ConflictError("This key exists already.", param="key", code="key_exists")
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.virtual_key(vkey.token), mapping=cast(Any, vkey.fields()))
        pipe.zadd(self.keys.virtual_keys, {vkey.token: now})
        pipe.execute()
        return clear, vkey

    def get(self, token: str) -> VirtualKey | None:
        """The key with this token, or None."""
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.virtual_key(token)))
        return VirtualKey.of_fields(fields) if "key_name" in fields else None

    def find(self, key_or_token: str) -> VirtualKey | None:
        """The key named by its clear value or its token."""
        if key_or_token.startswith(KEY_PREFIX):
            return self.get(hash_key(key_or_token))
        return self.get(key_or_token)

    def by_owner(self, owner: str) -> VirtualKey | None:
        """The key that owns what ``owner`` owns, or None (master, anonymous, deleted)."""
        if not owner.startswith(OWNER_PREFIX):
            return None
        return self.get(owner.removeprefix(OWNER_PREFIX))

    def update(self, vkey: VirtualKey, changes: Mapping[str, Any], now: float) -> VirtualKey:
        """``vkey`` with ``changes`` (``/key/update`` fields) applied and stored."""
        values = {name: changes[name] for name in (*LIMITS, "metadata") if name in changes}
        if "models" in changes:
            values["models"] = tuple(changes["models"] or ())
        if "duration" in changes:
            d = changes["duration"]
            values["expires_at"] = None if d is None else int(now + d)
        updated = replace(vkey, **values)
        alias = changes.get("key_alias", vkey.key_alias)
        if alias != vkey.key_alias:
            if alias and not self.redis.hsetnx(self.keys.key_aliases, alias, vkey.token):
                raise ConflictError(f"A key with alias {alias!r} exists already.",
                                    param="key_alias", code="key_alias_exists")
            if vkey.key_alias:
                self.redis.hdel(self.keys.key_aliases, vkey.key_alias)
            updated = replace(updated, key_alias=alias)
        self.redis.hset(self.keys.virtual_key(vkey.token), mapping=cast(Any, updated.fields()))
        return updated

    def delete(self, found: Sequence[VirtualKey]) -> None:
        """Remove keys, their alias and their usage: they stop working at once."""
        pipe = self.redis.pipeline()
        for vkey in found:
            pipe.delete(self.keys.virtual_key(vkey.token), self.keys.usage(vkey.owner))
            pipe.zrem(self.keys.virtual_keys, vkey.token)
            if vkey.key_alias:
                pipe.hdel(self.keys.key_aliases, vkey.key_alias)
        pipe.execute()

    def by_alias(self, alias: str) -> VirtualKey | None:
        """The key with this alias, or None."""
        token = cast(str | None, self.redis.hget(self.keys.key_aliases, alias))
        return self.get(token) if token else None

    def usage(self, owner: str) -> Usage:
        """What ``owner`` has spent so far."""
        return Usage.of_fields(cast(dict[str, str], self.redis.hgetall(self.keys.usage(owner))))

    def add_usage(self, owner: str, usage: Usage) -> None:
        """Count ``usage`` against ``owner`` (a virtual key's owner; others are not counted)."""
        if not usage or not owner.startswith(OWNER_PREFIX):
            return
        key = self.keys.usage(owner)
        pipe = self.redis.pipeline(transaction=False)
        for name, value in usage.as_dict().items():
            if value:
                pipe.hincrby(key, name, value)
        pipe.execute()
