"""Console output: short prefixed lines on stderr, and progress that suits the terminal.

A TTY gets a tqdm bar with rate and ETA; CI logs get one plain line every few seconds instead of
thousands of carriage returns.
"""

from __future__ import annotations

import sys
import time

_PREFIX = "tea-release"


def info(message: str) -> None:
    print(f"[{_PREFIX}] {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"[{_PREFIX}] warning: {message}", file=sys.stderr, flush=True)


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Byte progress for one long transfer; `update(n)` as bytes arrive, `close()` when done."""

    LOG_EVERY_SECONDS = 5.0

    def __init__(self, description: str, total: int | None, initial: int = 0) -> None:
        self.description = description
        self.total = total
        self.done = initial
        self._started = time.monotonic()
        self._last_log = self._started
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=description, unit="B",
                             unit_scale=True, unit_divisor=1024, leave=False)

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last_log >= self.LOG_EVERY_SECONDS:
            self._last_log = now
            info(self._summary(now))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _summary(self, now: float) -> str:
        rate = self.done / max(now - self._started, 1e-9)
        of_total = f" of {human_bytes(self.total)}" if self.total else ""
        return f"{self.description}: {human_bytes(self.done)}{of_total} ({human_bytes(rate)}/s)"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
