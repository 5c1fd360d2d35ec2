"""Exploration noise for acting: white or temporally correlated (AR(1)) standard-normal noise.

The tanh-Gaussian actor explores with tanh(mean + scale * std * eps). With eps drawn afresh every
control tick (white noise, correlation 0) a 10 Hz arm jitters around its mean path: over k ticks
the deviations add up only as sqrt(k), so trajectory-level alternatives (rise first, then reach)
are rarely tried, and the attempts that succeed differ from the mean by noise that cloning cannot
reproduce. AR(1) noise keeps each eps_t standard normal (the same per-step distribution, so the
same log-probabilities and entropy) but correlates it in time:

    eps_t = rho * eps_{t-1} + sqrt(1 - rho^2) * xi_t,   xi_t ~ N(0, I),   eps_0 ~ N(0, I)

so a deviation lasts about 1 / (1 - rho) ticks (rho 0.9: ~10 ticks, 1 s at 10 Hz). Call reset() at
every episode start (a task switch), so episodes do not share a deviation.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


class ExplorationNoise:
    def __init__(self, dim: int, correlation: float = 0.0, seed: Optional[int] = None):
        if not 0.0 <= correlation < 1.0:
            raise ValueError(f"noise correlation must be in [0, 1), got {correlation}")
        self.dim, self.rho = int(dim), float(correlation)
        self.rng = np.random.default_rng(seed)
        self._eps: Optional[np.ndarray] = None

    def reset(self) -> None:
        """A new episode: the next draw is independent of everything before."""
        self._eps = None

    def __call__(self) -> np.ndarray:
        """The next eps (dim,), float32, marginally N(0, I)."""
        xi = self.rng.standard_normal(self.dim)
        if self._eps is None or self.rho == 0.0:
            self._eps = xi
        else:
            self._eps = self.rho * self._eps + math.sqrt(1.0 - self.rho**2) * xi
        return self._eps.astype(np.float32)
