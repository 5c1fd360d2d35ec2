"""A serial chain from a URDF-lite joint list: forward kinematics and damped-least-squares IK.

Pure numpy (no ROS, no URDF parser). Each revolute joint is 9 numbers, exactly its URDF <joint>:
origin xyz (3), origin rpy (3), axis (3), in the parent link's frame; `tool` is the fixed
transform (xyz, rpy) from the last joint's link to the controlled point (TCP). ROS parameters
cannot nest lists, so configs give the joints as one flat list of 9*n numbers.

The arm bridge uses it for the joint-trajectory interface (end-effector delta -> joint targets)
and for end-effector poses when the driver publishes only joint states; the stand-in driver uses
it to emulate joint states on top of the mocap-driven MuJoCo arm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


def rpy_matrix(r: float, p: float, y: float) -> np.ndarray:
    """URDF rpy (fixed-axis roll, pitch, yaw) -> rotation matrix Rz(y) Ry(p) Rx(r)."""
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    n = float(np.linalg.norm(axis))
    if n < 1e-12 or angle == 0.0:
        return np.eye(3)
    k = axis / n
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis * angle (log map)."""
    c = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    angle = float(np.arccos(c))
    if angle < 1e-9:
        return np.zeros(3)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    s = np.sin(angle)
    if abs(s) < 1e-6:  # ~pi: take the axis from the diagonal
        axis = np.sqrt(np.maximum((np.diag(R) + 1) / 2, 0))
        j = int(np.argmax(axis))
        axis = R[:, j] + (np.eye(3)[:, j])
        axis /= np.linalg.norm(axis)
        return axis * angle
    return v / (2 * s) * angle


def matrix_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    t = np.trace(R)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


@dataclass
class Chain:
    joints: np.ndarray  # (n, 9): origin xyz, origin rpy, axis
    tool: np.ndarray  # (6,): xyz, rpy of the TCP in the last link
    lower: np.ndarray  # (n,) joint limits, rad
    upper: np.ndarray

    @classmethod
    def from_flat(
        cls,
        joints: Sequence[float],
        tool: Sequence[float] = (0, 0, 0, 0, 0, 0),
        lower: Optional[Sequence[float]] = None,
        upper: Optional[Sequence[float]] = None,
    ) -> "Chain":
        j = np.asarray(joints, dtype=np.float64)
        if j.size == 0 or j.size % 9:
            raise ValueError(f"chain joints must be 9 numbers per joint (xyz rpy axis), got {j.size}")
        j = j.reshape(-1, 9)
        n = len(j)
        lo = np.full(n, -np.pi) if lower is None or len(lower) == 0 else np.asarray(lower, dtype=np.float64)
        hi = np.full(n, np.pi) if upper is None or len(upper) == 0 else np.asarray(upper, dtype=np.float64)
        if lo.shape != (n,) or hi.shape != (n,) or np.any(lo >= hi):
            raise ValueError(f"joint limits must be {n} lows below {n} highs")
        t = np.asarray(tool, dtype=np.float64).reshape(6)
        return cls(j, t, lo, hi)

    @property
    def n(self) -> int:
        return len(self.joints)

    def _fixed(self):
        if not hasattr(self, "_cache"):
            self._cache = [(rpy_matrix(*row[3:6]), row[:3].copy(), row[6:9].copy()) for row in self.joints]
            self._tool = (rpy_matrix(*self.tool[3:6]), self.tool[:3].copy())
        return self._cache, self._tool

    def fk(self, q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions -> (TCP position (3,), rotation matrix (3, 3)) in the base frame."""
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (self.n,):
            raise ValueError(f"expected {self.n} joint positions, got {q.size}")
        fixed, (Rt, pt) = self._fixed()
        R, p = np.eye(3), np.zeros(3)
        for (Ro, po, axis), qi in zip(fixed, q):
            p = p + R @ po
            R = R @ Ro @ axis_angle_matrix(axis, qi)
        return p + R @ pt, R @ Rt

    def jacobian(self, q: Sequence[float], eps: float = 1e-6) -> np.ndarray:
        """(6, n) geometric-style Jacobian by finite differences (position; rotation vector)."""
        q = np.asarray(q, dtype=np.float64)
        p0, R0 = self.fk(q)
        J = np.zeros((6, self.n))
        for i in range(self.n):
            dq = q.copy()
            dq[i] += eps
            p, R = self.fk(dq)
            J[:3, i] = (p - p0) / eps
            J[3:, i] = rotation_vector(R @ R0.T) / eps
        return J

    def ik(
        self,
        q0: Sequence[float],
        target_p: Sequence[float],
        target_R: Optional[np.ndarray] = None,
        damping: float = 0.05,
        iterations: int = 20,
        max_step: float = 0.2,
        rot_weight: float = 0.3,
        tol: float = 1e-5,
    ) -> tuple[np.ndarray, float]:
        """Damped least squares from `q0` towards the TCP pose. `target_R` None = position only.
        Joints stay inside the limits; each iteration moves each joint at most `max_step` rad.
        Returns (q, remaining position error in m)."""
        q = np.clip(np.asarray(q0, dtype=np.float64).copy(), self.lower, self.upper)
        tp = np.asarray(target_p, dtype=np.float64).reshape(3)
        for _ in range(iterations):
            p, R = self.fk(q)
            e_p = tp - p
            J = self.jacobian(q)
            if target_R is None:
                e, Jx = e_p, J[:3]
            else:
                e = np.concatenate([e_p, rot_weight * rotation_vector(target_R @ R.T)])
                Jx = np.vstack([J[:3], rot_weight * J[3:]])
            if float(np.linalg.norm(e)) < tol:
                break
            A = Jx @ Jx.T + (damping**2) * np.eye(len(e))
            dq = Jx.T @ np.linalg.solve(A, e)
            m = float(np.max(np.abs(dq)))
            if m > max_step:
                dq *= max_step / m
            q = np.clip(q + dq, self.lower, self.upper)
        p, _ = self.fk(q)
        return q, float(np.linalg.norm(tp - p))


def delta_rotation(rpy_delta: Sequence[float]) -> np.ndarray:
    """A small end-effector rotation command (roll, pitch, yaw deltas in rad, base frame) -> matrix."""
    v = np.asarray(rpy_delta, dtype=np.float64).reshape(3)
    return axis_angle_matrix(v, float(np.linalg.norm(v)))
