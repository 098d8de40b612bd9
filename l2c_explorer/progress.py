"""Progress reporting and stopping, shared by the API, the command line and the app.

Long operations take two optional keyword arguments:

``callback(progress)``
    receives a :class:`Progress` at every step worth reporting (files read, training steps, epochs);
``stop``
    a :class:`threading.Event`; when it is set the operation ends at the next step (well under a second
    on a CPU) and returns what it has learnt so far.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Progress:
    """One progress report.

    Attributes
    ----------
    stage : str
        ``"reading"``, ``"features"``, ``"training"`` or ``"finishing"``.
    step, total : int
        Position within the stage (``total`` may be 0 when unknown).
    epoch : float or None
        Fractional epoch during training.
    metrics : dict
        Latest values, e.g. ``{"loss": 0.31, "k_estimated": 27}``.
    elapsed : float
        Seconds since the operation started.
    eta : float or None
        Estimated seconds left in this stage.
    message : str
        A sentence for people.
    """

    stage: str
    step: int = 0
    total: int = 0
    epoch: float | None = None
    metrics: dict = field(default_factory=dict)
    elapsed: float = 0.0
    eta: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


Callback = Callable[[Progress], None]


class Reporter:
    """Turns raw step counts into :class:`Progress` reports with elapsed time and an ETA."""

    def __init__(self, callback: Callback | None, stop: threading.Event | None = None):
        self.callback = callback
        self.stop = stop
        self.started = time.perf_counter()
        self._stage_started: dict[str, float] = {}

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def should_stop(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def __call__(self, stage: str, step: int = 0, total: int = 0, *, message: str = "", epoch=None, **metrics) -> None:
        now = time.perf_counter()
        began = self._stage_started.setdefault(stage, now)
        eta = None
        if total and step:
            eta = (now - began) / step * max(total - step, 0)
        if self.callback is not None:
            self.callback(
                Progress(
                    stage=stage,
                    step=step,
                    total=total,
                    epoch=epoch,
                    metrics=metrics,
                    elapsed=now - self.started,
                    eta=eta,
                    message=message,
                )
            )
