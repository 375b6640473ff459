"""Webhook secrets at rest: encrypted with the server's Fernet key(s) before they are stored.

Several comma-separated keys allow rotation: the first encrypts, every one decrypts
(``MultiFernet``), so old records stay readable until they are re-encrypted.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from batchgate.errors import BatchgateError, ConfigError

_SOURCE = "webhook secret keys"


class SecretBox:
    """Encrypts and decrypts short texts with the server's Fernet key(s)."""

    __slots__ = ("_count", "_fernet")

    def __init__(self, keys: str) -> None:
        parts = [part.strip() for part in keys.split(",") if part.strip()]
        if not parts:
            raise ConfigError("no key given; generate one with SecretBox.generate_key()",
                              source=_SOURCE)
        fernets = []
        for number, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part))
            except ValueError:
                # Name the position, never the key itself.
                raise ConfigError(f"key {number} of {len(parts)} is not a Fernet key "
                                  "(32 url-safe base64-encoded bytes)", source=_SOURCE) from None
        self._fernet: Fernet | MultiFernet = fernets[0] if len(fernets) == 1 else MultiFernet(
            fernets)
        self._count = len(fernets)

    def __repr__(self) -> str:
        return f"SecretBox(<{self._count} key{'s' if self._count != 1 else ''}>)"

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, as text."""
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, text: str) -> str:
        """``text`` encrypted with the first key, as a Fernet token."""
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The text inside ``token``; raises :class:`BatchgateError` if no key opens it."""
        try:
            return self._fernet.decrypt(token).decode()
        except (InvalidToken, ValueError):
            # ValueError: non-ASCII tokens and non-UTF-8 plaintexts, i.e. not ours either.
            raise BatchgateError(
                "stored secret cannot be decrypted with the server key") from None

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (for rotating keys on stored records)."""
        return self.encrypt(self.decrypt(token))
