"""A finding of `cnnscope reproduce`: a job whose result holds the seed's claim, the measurement, what the
claim expects of it and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..jobs import Job, Result
from ..viz import image_grid

VERDICTS = ("holds", "does not hold", "inconclusive")


@dataclass
class FindingResult(Result):
    """One finding: its `id`, the seed's `claim`, the numbers `measured`, what the claim `expected` of them,
    the `verdict` (one of VERDICTS), the number of images and a `note` saying how to read it."""

    id: str
    claim: str
    measured: dict
    expected: str
    verdict: str
    n_images: int
    note: str = ""
    pictures: list = field(default_factory=list, metadata={"json": False})
    captions: list = field(default_factory=list, metadata={"json": False})


class FindingJob(Job):
    """Base of the findings: the record is KEY.json; pictures (if any) go to KEY.png as one grid. A finding's
    `cost` is its seconds on 500 ImageNet pictures, one thread (`benchmarks/reproduce.py`): the engine starts the
    longest first."""

    def write(self, out: Path, result: FindingResult) -> list[str]:
        if not result.pictures:
            return []
        image_grid(result.pictures, result.captions, out / f"{self.key}.png", ncols=min(len(result.pictures), 5))
        return [f"{self.key}.png"]
