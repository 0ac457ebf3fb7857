"""Seed 001's numeric channel "loading codes" as shorthand for channel specs of hyper-labeled stacks.

The 16-page hyper-labeled layout (``HYPERLABELED_CHANNELS``): pages 0-2 cytoplasm label, 3-5 membrane
label, 6-8 mitochondria label (the first page of each is the label's main image), pages 9-15 brightfield
at -10, -5, -3, 0, +3, +5, +10 um from focus.

| code | spec |
|---|---|
| 0-50 | that page |
| 100 | merge of the three labels (pages 0, 3, 6), no dropout |
| 101 / 102 / 103 | one random brightfield page below focus {9,10,11} / above focus {13,14,15} / any {9..15} |
| 104 | merge of all brightfield pages 9..15 |
| 107 | one random page of all 16 |
| 108 | one random fluorescence label {0, 3, 6} |
| 110 | blank (all zeros) |
| 111 | merge of the three labels with merge dropout ``merge_dropout`` |
| >= 200 | channel dropout (probability ``dropout``) of code - 200, whose own dropouts are 0 |

Validation (no randomisation) reads the plane nearest to focus of a random set: 101 -> page 11 (-3 um),
102 -> 13 (+3 um), 103 and 107 -> 12 (in focus), 108 -> 0 (cytoplasm).

Seed bugs fixed here: code 108 returned a (1, H, W) array (``np.random.choice(..., 1)``) instead of a
plane; randomisation and dropout leaked into validation (here: training only, unless
``channels.leak_to_validation=true``); undefined codes (51-99, 105, 106, 109, 112-199) returned None
and crashed later, here they are rejected up front.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cellseg.errors import ConfigError

HYPERLABELED_CHANNELS: tuple[str, ...] = (
    "cytoplasm", "cytoplasm_2", "cytoplasm_3",
    "membrane", "membrane_2", "membrane_3",
    "mitochondria", "mitochondria_2", "mitochondria_3",
    "bf_m10", "bf_m5", "bf_m3", "bf_0", "bf_p3", "bf_p5", "bf_p10",
)  # fmt: skip

_FLUORESCENCE = [0, 3, 6]
_BRIGHTFIELD = list(range(9, 16))
_DROPOUT_OFFSET = 200
_VALID = "0-50, 100-104, 107, 108, 110, 111 and >= 200 (channel dropout of code - 200)"


def spec_from_code(code: int, dropout: float = 0.0, merge_dropout: float = 0.0) -> Any:
    """The channel spec (config form) of one seed 001 loading code."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise ConfigError(f"Seed 001 loading code {code!r} is not an integer; valid codes: {_VALID}.")
    if code >= _DROPOUT_OFFSET:
        return {"dropout": dropout, "spec": spec_from_code(code - _DROPOUT_OFFSET)}
    if 0 <= code <= 50:
        return code
    table: dict[int, Any] = {
        100: {"merge": _FLUORESCENCE},
        101: {"random": _BRIGHTFIELD[:3], "val": 11},
        102: {"random": _BRIGHTFIELD[4:], "val": 13},
        103: {"random": _BRIGHTFIELD, "val": 12},
        104: {"merge": _BRIGHTFIELD},
        107: {"random": list(range(16)), "val": 12},
        108: {"random": _FLUORESCENCE, "val": 0},
        110: "blank",
        111: {"merge": _FLUORESCENCE, "dropout": merge_dropout},
    }
    if code not in table:
        raise ConfigError(f"Seed 001 loading code {code} is not defined; valid codes: {_VALID}.")
    return table[code]


def specs_from_codes(codes: Sequence[int], dropout: float = 0.0, merge_dropout: float = 0.0) -> list[Any]:
    """Channel specs for a list of loading codes (one model input channel per code)."""
    if isinstance(codes, (str, int)) or not codes:
        raise ConfigError(
            f"channels.codes must be a non-empty list of seed 001 loading codes, got {codes!r}."
        )
    return [spec_from_code(code, dropout, merge_dropout) for code in codes]
