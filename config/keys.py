"""Every Redis key batchgate writes is built here, and nowhere else.

Schema (``P`` = ``batchgate_settings.key_prefix``, default ``batchgate``; a job's own keys
share the hash tag ``{<job id>}``, a deployment's budget keys the tag ``{<deployment id>}``, so
each group lives in one Redis Cluster slot)::

    P:job:{J}                 hash    the job record: kind, status, counts, timestamps,
                                      webhook state (its secret only ever Fernet-encrypted)
    P:job:{J}:items           hash    item index -> item JSON {custom_id, model, body}
    P:job:{J}:results         hash    item index -> result JSON, written once (HSETNX)
    P:job:{J}:done            list    item indexes in the order they finished
    P:job:{J}:attempts        hash    item index -> JSON routing state of an item being retried
    P:job:{J}:ids             hash    custom_id -> input line, only while a batch input file is
                                      validated (duplicate check); deleted when that ends
    P:job:{J}:credentials     hash    "*" (the job's) or item index -> a caller's own upstream
                                      credentials, each a Fernet token (never in clear)
    P:job:{J}:events          pub/sub channel (not a key): item and job events
    P:jobs:owner:{O}          zset    job ids of owner O by creation time (listing)
    P:batches:owner:{O}       zset    ids of owner O's ``/v1/batches`` jobs by creation time
    P:jobs:active             zset    job id -> deadline (completion window) while running
    P:jobs:finalizing         zset    batch job id -> when its output files are due to be written
    P:leases                  zset    "J|start|stop" chunk -> lease deadline (recovery)
    P:webhooks:due            zset    job id -> when its next delivery attempt is due
    P:idem:{O}:{digest}       string  "job id|body digest" for an Idempotency-Key
    P:file:{F}                hash    a file's metadata: bytes, created_at, filename, purpose,
                                      expires_at, owner (its body lives in the file store,
                                      under the id, never in Redis); a deleted file keeps a
                                      ``deleted`` tombstone here for FILE_TOMBSTONE_TTL
    P:files:owner:{O}         zset    file ids of owner O by creation time (listing)
    P:files:expiring          zset    file id -> expires_at, for files uploaded with one
    P:dep:{D}:window          hash    bucket number -> "requests tokens" granted in that bucket
                                      (rpm/tpm sliding window of deployment D, ~242 buckets),
                                      plus requests, tokens (totals) and low (oldest bucket kept)
    P:dep:{D}:inflight        zset    reservation -> lease deadline (parallel requests)
    P:dep:{D}:state           hash    blocked_until, fails and cooling_until (cooldown), learned
                                      (AIMD), cut_at, latency, upstream signals, interactive_until
    P:vkey:{T}                hash    a virtual key by token T (sha256 of the key; the clear key
                                      is never stored): alias, models, limits, expiry, metadata
    P:vkeys                   zset    virtual key tokens by creation time
    P:vkeys:alias             hash    key alias -> token (aliases are unique)
    P:usage:{O}               hash    prompt_tokens, completion_tokens, total_tokens, requests
                                      spent by owner O (a virtual key: ``key:<token>``)
    P:celery:...              Celery's own broker keys (kombu ``global_keyprefix``)
    P:celery:{Q}              list    queue Q's waiting task messages (kombu's; read only
                                      for the queue-depth gauge, never written here)

TTL policy:

- A job's own keys (record, items, results, done) have no TTL while the job runs; when it
  ends, the script that ends it sets ``job_ttl`` (default 7 days) on all four at once.
- A job's ``attempts`` hash lives only as long as the job: it must get the same ``job_ttl``
  as the four keys above when the job ends.
- A deployment's budget keys get a TTL refreshed by every script that writes them: the
  window the window plus its margin and one bucket (62 s, after which every bucket in it has
  stopped counting), inflight the longest lease handed out, state
  :data:`DEPLOYMENT_STATE_TTL` (a day, or longer while a block lasts longer): an idle
  deployment leaves nothing behind, and forgets what it learned after a quiet day.
- Idempotency keys expire after :data:`IDEMPOTENCY_TTL` (24 h, as OpenAI keeps them).
- A batch's ``ids`` hash is deleted when its input file's validation ends (either way).
- A job's ``credentials`` hash is deleted by the script that ends the job (whatever the
  end); its TTL, the completion window plus :data:`CREDENTIALS_TTL_MARGIN`, is a backstop.
- The index sets (``jobs:owner``, ``batches:owner``, ``jobs:active``, ``jobs:finalizing``,
  ``leases``, ``webhooks:due``) carry no TTL:
  members leave when their work ends, and listing prunes owner entries whose job expired.
- A file's record has no TTL: files live until deleted, or until their ``expires_at`` when
  uploaded with ``expires_after`` (beat deletes record and body then; reads treat it as gone
  from that second). Deleting a file leaves a tombstone record for
  :data:`FILE_TOMBSTONE_TTL` (an hour) and its ``files:owner`` entry, so a list cursor
  naming a file deleted mid-iteration still works; listing prunes entries whose record is
  gone. ``files:owner`` and ``files:expiring`` carry no TTL.
- Virtual keys, their index and alias map, and an owner's usage live until the key is
  deleted (``/key/delete`` removes all four); an expired key stays readable by the admin.
"""

from __future__ import annotations

from dataclasses import dataclass

IDEMPOTENCY_TTL = 24 * 3600
FILE_TOMBSTONE_TTL = 3600
DEPLOYMENT_STATE_TTL = 24 * 3600
CREDENTIALS_TTL_MARGIN = 3600
"""How long a job's client-side credentials outlive its completion window at most: beat
expires an overdue job within a minute, and its last calls end within their timeout."""
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's Redis transport defaults (``sep``, ``priority_steps``): how it names a
queue's lists."""


@dataclass(frozen=True)
class Keys:
    """Key builders under one prefix."""

    prefix: str

    def job(self, job_id: str) -> str:
        """The job record (hash)."""
        return f"{self.prefix}:job:{{{job_id}}}"

    def items(self, job_id: str) -> str:
        """Item index -> item JSON (hash)."""
        return f"{self.job(job_id)}:items"

    def results(self, job_id: str) -> str:
        """Item index -> result JSON (hash, write-once per field)."""
        return f"{self.job(job_id)}:results"

    def done(self, job_id: str) -> str:
        """Item indexes in completion order (list)."""
        return f"{self.job(job_id)}:done"

    def events(self, job_id: str) -> str:
        """The job's pub/sub channel."""
        return f"{self.job(job_id)}:events"

    def attempts(self, job_id: str) -> str:
        """Item index -> JSON routing state of an item being retried (hash)."""
        return f"{self.job(job_id)}:attempts"

    def ids(self, job_id: str) -> str:
        """custom_id -> input line while a batch input file is validated (hash)."""
        return f"{self.job(job_id)}:ids"

    def credentials(self, job_id: str) -> str:
        """``*`` or item index -> a caller's encrypted upstream credentials (hash)."""
        return f"{self.job(job_id)}:credentials"

    def owner_batches(self, owner: str) -> str:
        """``/v1/batches`` job ids of one owner by creation time (zset)."""
        return f"{self.prefix}:batches:owner:{owner}"

    @property
    def finalizing(self) -> str:
        """Batch jobs whose output files are due to be written, by due time (zset)."""
        return f"{self.prefix}:jobs:finalizing"

    def owner_jobs(self, owner: str) -> str:
        """Job ids of one owner by creation time (zset)."""
        return f"{self.prefix}:jobs:owner:{owner}"

    @property
    def active(self) -> str:
        """Running job ids by deadline (zset)."""
        return f"{self.prefix}:jobs:active"

    @property
    def leases(self) -> str:
        """Handed-out chunks by lease deadline (zset)."""
        return f"{self.prefix}:leases"

    @property
    def webhooks_due(self) -> str:
        """Jobs whose webhook delivery is due, by due time (zset)."""
        return f"{self.prefix}:webhooks:due"

    def idempotency(self, owner: str, digest: str) -> str:
        """One Idempotency-Key of one owner (string)."""
        return f"{self.prefix}:idem:{owner}:{digest}"

    def file(self, file_id: str) -> str:
        """One file's metadata (hash)."""
        return f"{self.prefix}:file:{file_id}"

    def owner_files(self, owner: str) -> str:
        """File ids of one owner by creation time (zset)."""
        return f"{self.prefix}:files:owner:{owner}"

    @property
    def files_expiring(self) -> str:
        """Files with an ``expires_at``, by that time (zset)."""
        return f"{self.prefix}:files:expiring"

    def deployment(self, deployment_id: str) -> str:
        """The common stem of one deployment's budget keys (not a key itself)."""
        return f"{self.prefix}:dep:{{{deployment_id}}}"

    def deployment_window(self, deployment_id: str) -> str:
        """Bucket -> "requests tokens" of one deployment's sliding window (hash)."""
        return f"{self.deployment(deployment_id)}:window"

    def deployment_inflight(self, deployment_id: str) -> str:
        """Reservation -> lease deadline of one deployment's in-flight grants (zset)."""
        return f"{self.deployment(deployment_id)}:inflight"

    def deployment_state(self, deployment_id: str) -> str:
        """One deployment's blocks, learned limits and upstream signals (hash)."""
        return f"{self.deployment(deployment_id)}:state"

    def virtual_key(self, token: str) -> str:
        """One virtual key's record, by token (hash)."""
        return f"{self.prefix}:vkey:{token}"

    @property
    def virtual_keys(self) -> str:
        """Virtual key tokens by creation time (zset)."""
        return f"{self.prefix}:vkeys"

    @property
    def key_aliases(self) -> str:
        """Key alias -> token (hash)."""
        return f"{self.prefix}:vkeys:alias"

    def usage(self, owner: str) -> str:
        """Tokens and requests spent by one owner (hash)."""
        return f"{self.prefix}:usage:{owner}"

    @property
    def celery(self) -> str:
        """The prefix of Celery's broker keys."""
        return f"{self.prefix}:celery:"

    def broker_queues(self, queue: str) -> list[str]:
        """The lists holding queue ``queue``'s waiting messages: kombu's Redis transport keeps
        one per priority step, the plain name for step 0 (the only one batchgate sends to)."""
        return [self.celery + queue] + [f"{self.celery}{queue}{KOMBU_PRIORITY_SEP}{step}"
                                        for step in KOMBU_PRIORITY_STEPS[1:]]
