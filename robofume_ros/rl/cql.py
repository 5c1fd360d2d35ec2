"""CQL baseline: Cal-QL with calibration off (no MC-return lower bound); everything else identical."""

from __future__ import annotations

from dataclasses import dataclass

from robofume_ros.rl.calql import CalQL, CalQLConfig


@dataclass
class CQLConfig(CalQLConfig):
    calibrate: bool = False  # the only difference to Cal-QL


class CQL(CalQL):
    pass
