"""Progress of a generator run: a progress bar and the run's summary (images, time per stage)."""

from __future__ import annotations

import dataclasses
import sys
import time


class Progress:
    """A progress bar: tqdm when installed, else a line on stderr every ``interval`` seconds
    with images done, images/s and the ETA."""

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, interval: float = 2.0):
        self.total, self.done, self.enabled, self.interval = total, initial, enabled, interval
        self.start = self.last = time.perf_counter()
        self.initial = initial
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, initial=initial, unit="img", desc="generate", dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and (time.perf_counter() - self.last >= self.interval or self.done == self.total):
            self.last = time.perf_counter()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return f"{self.done}/{self.total} images, {rate:.2f} images/s, ETA {eta:.0f} s"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclasses.dataclass
class Summary:
    """What a generator run did: images written and skipped, cases, time per stage (summed over
    devices when several render at once)."""

    written: int = 0
    skipped: int = 0
    cases: int = 0
    seconds: float = 0.0
    stages: dict = dataclasses.field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: Summary) -> None:
        self.written += other.written
        self.skipped += other.skipped
        for k, v in other.stages.items():
            self.stages[k] = self.stages.get(k, 0.0) + v

    def __str__(self) -> str:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.stages.items(), key=lambda kv: -kv[1]))
        return (
            f"{self.written} images written, {self.skipped} already complete, {self.cases} cases, "
            f"{self.seconds:.1f} s ({self.images_per_second:.2f} images/s); stages: {stages or 'none'}"
        )
