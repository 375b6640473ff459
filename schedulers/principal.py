"""A caller's own limits (a virtual key's ``rpm_limit``, ``tpm_limit``,
``max_parallel_requests``), enforced with the same budgets as deployments.

A key's budget is a window, an in-flight set and a state under its own id, reserved by the
same ``acquire.lua`` before a deployment is, and released with it: one upstream request
counts one request and its tokens against the key, however many items it carries (packed
embeddings). The key never cools down nor learns a limit; only what it declares holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Deployment, Provider
from schedulers.state import CooldownPolicy, Outcome, Report

NO_COOLDOWN = CooldownPolicy(allowed_fails=-1, cooldown_time=0.0)
"""A key's budget never cools down: its upstreams' failures are not the caller's."""
BUDGET_ID_PREFIX = "key:"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request runs for, with the limits the scheduler holds them to."""

    owner: str
    """The owner of the jobs and files it makes (``key:<token>`` for a virtual key)."""
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None

    @property
    def limited(self) -> bool:
        """True when any limit is declared (else nothing needs reserving)."""
        return bool(self.rpm or self.tpm or self.max_parallel_requests)


def budget_subject(principal: Principal) -> Deployment:
    """The principal as the deployment the budgets take: they read ``id``, ``rpm``, ``tpm``
    and ``max_parallel_requests``, nothing else."""
    return Deployment(id=BUDGET_ID_PREFIX + principal.owner.removeprefix(BUDGET_ID_PREFIX),
                      model_name="", provider=Provider.OPENAI, model="", api_base="",
                      rpm=principal.rpm, tpm=principal.tpm,
                      max_parallel_requests=principal.max_parallel_requests)


def principal_report(report: Report) -> Report:
    """What a call's end tells its caller's budget: sent or not, and the tokens it used."""
    outcome = Outcome.UNSENT if report.outcome is Outcome.UNSENT else Outcome.OK
    return Report(outcome, tokens=report.tokens, latency=report.latency)
