"""The fake upstream's mutable state: settings, rate windows, stats, randomness, ids.

One instance per application, touched only from its event loop, so nothing here locks.
"""

from __future__ import annotations

import itertools
import random
import secrets
import time

from aiohttp import web

from batchgate.fake_upstream.ratelimit import ADMITTED_UNLIMITED, Admission, SlidingWindow, admit
from batchgate.fake_upstream.settings import FakeSettings, ModelBehaviour
from batchgate.fake_upstream.stats import Stats


class FakeState:
    """Everything the handlers share."""

    def __init__(self, settings: FakeSettings) -> None:
        self.initial_settings = settings
        self.settings = settings
        self.stats = Stats(settings.log_size)
        self.rng = random.Random(settings.seed)
        self.windows: dict[str, tuple[SlidingWindow, SlidingWindow]] = {}
        self.created = int(time.time())
        # A per-process random prefix keeps ids unique across restarts; the counter is cheap.
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def serial(self) -> str:
        """A fresh unique id suffix (``chatcmpl-<serial>``)."""
        return f"{self._prefix}{next(self._counter):08x}"

    def admit(self, model: str, behaviour: ModelBehaviour, tokens: int) -> Admission:
        """Ask the model's rpm/tpm windows to admit a request charging ``tokens``."""
        if behaviour.rpm is None and behaviour.tpm is None:
            return ADMITTED_UNLIMITED
        windows = self.windows.get(model)
        if windows is None:
            windows = self.windows[model] = (SlidingWindow(), SlidingWindow())
        return admit(windows[0], windows[1], behaviour.rpm, behaviour.tpm, tokens,
                     time.monotonic())

    def configure(self, settings: FakeSettings, *, reseed: bool) -> None:
        """Switch to new settings. Windows are kept: a lowered limit applies to past usage."""
        self.settings = settings
        self.stats.resize(settings.log_size)
        if reseed:
            self.rng.seed(settings.seed)

    def reset(self, *, restore_config: bool) -> None:
        """Forget counters, windows and the log (and, if asked, go back to the startup config)."""
        if restore_config:
            self.configure(self.initial_settings, reseed=True)
        self.stats.reset()
        self.windows.clear()


STATE = web.AppKey("fake_upstream_state", FakeState)
