"""What a batch costs: `seconds ≈ a + b·rows`, learnt online from the batches actually run.

`a` is the fixed cost of a batch (the hop to a worker, the call, the framework's overhead) and
`b` the cost of one more row. The fit is ordinary least squares over a window of recent
batches, so it follows drift (a GPU warming up, another tenant on the machine) within a few
dozen batches, and the first batches (imports, JIT, CUDA context) are left out of it entirely:
one warm-up outlier would otherwise make the admission check turn requests away for a while.
BentoML fits the same model but refreshes it at most every 5 s (reference/bentoml.md §4.2).
"""

from __future__ import annotations

import collections

__all__ = ["CostModel"]


class CostModel:
    """Online least-squares fit of batch duration against batch rows."""

    def __init__(self, window: int = 32, warmup: int = 2, min_samples: int = 3) -> None:
        self._samples: collections.deque[tuple[int, float]] = collections.deque(maxlen=window)
        self._warmup = warmup
        self._min_samples = min_samples
        self.a = 0.0
        """Fixed cost of a batch, seconds."""
        self.b = 0.0
        """Cost of each row, seconds."""

    @property
    def trained(self) -> bool:
        """Whether enough batches were seen for the estimates to mean something."""
        return len(self._samples) >= self._min_samples

    def estimate(self, rows: float) -> float:
        """Expected seconds for a batch of `rows` (0 before the model is trained)."""
        return self.a + self.b * rows

    def observe(self, rows: int, seconds: float) -> None:
        if self._warmup > 0:
            self._warmup -= 1
            return
        self._samples.append((rows, max(seconds, 0.0)))
        self._fit()

    def _fit(self) -> None:
        n = len(self._samples)
        mean_x = sum(x for x, _ in self._samples) / n
        mean_y = sum(y for _, y in self._samples) / n
        var_x = sum((x - mean_x) ** 2 for x, _ in self._samples)
        if var_x == 0:
            # One batch size only: rows and fixed cost cannot be told apart. Calling it all
            # fixed cost is the reading under which batching looks most worthwhile, and the
            # batches it then forms give the spread of sizes needed to correct it.
            self.a, self.b = mean_y, 0.0
            return
        cov = sum((x - mean_x) * (y - mean_y) for x, y in self._samples)
        b = max(cov / var_x, 0.0)
        a = mean_y - b * mean_x
        if a < 0:  # a negative fixed cost is noise; refit as a line through the origin
            a = 0.0
            b = sum(x * y for x, y in self._samples) / max(
                sum(x * x for x, _ in self._samples), 1e-12
            )
        self.a, self.b = a, b

    def __repr__(self) -> str:
        return f"<CostModel a={self.a * 1e3:.3f} ms b={self.b * 1e6:.1f} µs/row n={len(self._samples)}>"
