"""SAC from scratch: the Cal-QL file with the conservative term, calibration and BC term off."""

from __future__ import annotations

from dataclasses import dataclass

from robofume_ros.rl.calql import CalQL, CalQLConfig


@dataclass
class SACConfig(CalQLConfig):
    use_cql: bool = False  # no conservative regulariser
    calibrate: bool = False  # (meaningless without CQL)
    bc_weight: float = 0.0  # no behaviour cloning
    online_ratio: float = 1.0  # SAC from scratch samples only its own (online) data


class SAC(CalQL):
    pass
