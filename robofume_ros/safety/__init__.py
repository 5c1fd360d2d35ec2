"""safety: the one envelope (envelope.py) and command gate (gate.py) every arm command passes
through, in the sim and on a real arm; kinematics.py (FK/IK for the joint-trajectory bridge).
Pure Python: no ROS imports here."""
