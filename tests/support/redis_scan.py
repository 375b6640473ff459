"""Reading everything under a key prefix: for tests that prove nothing leaks or half-writes."""

from __future__ import annotations

import redis


def keys_under(client: redis.Redis, prefix: str) -> list[str]:
    """Every key under ``prefix`` (SCAN: fine for a test's own prefix, never in the service)."""
    return sorted(k.decode() if isinstance(k, bytes) else k
                  for k in client.scan_iter(match=f"{prefix}*", count=1000))


def dump_values(client: redis.Redis, prefix: str) -> str:
    """Every value stored under ``prefix``, whatever its type, as one text."""
    parts: list[str] = []
    for key in keys_under(client, prefix):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            parts.append(repr(client.get(key)))
        elif kind == "hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == "list":
            parts.append(repr(client.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(repr(client.smembers(key)))
        elif kind == "zset":
            parts.append(repr(client.zrange(key, 0, -1, withscores=True)))
        parts.append(key)
    return "\n".join(parts)


def delete_under(client: redis.Redis, prefix: str) -> None:
    """Remove a test's keys."""
    keys = keys_under(client, prefix)
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
