"""Seeds derived from a run's seed, so that every random stream of an epoch follows from (seed, epoch)."""

from __future__ import annotations

import numpy as np


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for ``epoch`` of a run seeded ``seed``, unrelated to its neighbours'."""
    return int(np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1)[0])
