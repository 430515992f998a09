"""Progress of a generator run: a progress bar and the run's summary (images, time per stage)."""

from __future__ import annotations

import dataclasses

from tqdm import tqdm


class Progress:
    """A tqdm progress bar of the images of a run, on stderr (silent when not ``enabled``)."""

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True) -> None:
        self._bar = tqdm(
            total=total, initial=initial, unit="img", desc="generate", dynamic_ncols=True, disable=not enabled
        )

    def update(self, n: int = 1) -> None:
        """Count ``n`` more images done."""
        self._bar.update(n)

    def close(self) -> None:
        """End the bar (its last line stays on the terminal)."""
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
