"""Only the learner changes the policy: weights are signed with its Ed25519 key and a policy node
loads only weights that verify (`pytest -k forged`)."""

import hashlib
import os
import time

import pytest

from robofume_ros.safety import signing


def test_signatures_verify_only_for_the_signer_and_the_signed_weights(tmp_path):
    key = signing.load_or_create_private_key(tmp_path / "k" / "learner")
    assert (tmp_path / "k" / "learner.pub").exists()
    assert os.stat(tmp_path / "k" / "learner").st_mode & 0o077 == 0  # private: owner only
    pub = signing.load_public_key(tmp_path / "k" / "learner.pub")
    sha = hashlib.sha256(b"weights").hexdigest()
    sig = signing.sign_weights(key, 7, sha)
    signing.verify_weights(pub, 7, sha, sig)
    # the same key again on restart (not a new one)
    again = signing.load_or_create_private_key(tmp_path / "k" / "learner")
    assert signing.key_id(again.public_key()) == signing.key_id(pub)
    other = signing.load_or_create_private_key(tmp_path / "other")
    for version, digest, signature, why in (
        (8, sha, sig, "does not verify"),  # replayed under another version
        (7, hashlib.sha256(b"other weights").hexdigest(), sig, "does not verify"),
        (7, sha, signing.sign_weights(other, 7, sha), "does not verify"),  # another learner's key
        (7, sha, b"", "unsigned"),
        (7, "", sig, "without a sha256"),
    ):
        with pytest.raises(signing.SigningError, match=why):
            signing.verify_weights(pub, version, digest, signature)


def test_key_files_that_cannot_be_used_give_clear_errors(tmp_path):
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(signing.SigningError, match="bad is not a PEM private key"):
        signing.load_or_create_private_key(tmp_path / "bad")
    with pytest.raises(signing.SigningError, match="does not exist"):
        signing.load_public_key(tmp_path / "missing.pub")
    (tmp_path / "bad.pub").write_text("-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n")
    with pytest.raises(signing.SigningError, match="not a PEM public key"):
        signing.load_public_key(tmp_path / "bad.pub")


def test_forged_or_unsigned_weights_are_refused_and_the_old_policy_keeps_acting(tmp_path):
    pytest.importorskip("rclpy")
    from rosgraph import graph_under_test
    from test_ros_poison import observation
    from tiny_models import tiny_learner_checkpoint

    from robofume_ros.msg import ArmCommand, Observation, PolicyWeights
    from robofume_ros.rl.learner import Learner

    ckpt = tiny_learner_checkpoint(tmp_path / "learner.pt")
    blob = Learner.load(ckpt).export_policy()
    sha = hashlib.sha256(blob).hexdigest()
    key_path = tmp_path / "keys" / "learner_ed25519"
    learner_key = signing.load_or_create_private_key(key_path)  # as the learner makes it
    stranger = signing.load_or_create_private_key(tmp_path / "stranger")
    args = {"policy_checkpoint": str(ckpt), "run_dir": str(tmp_path / "run"), "record": "false"}
    args["weights_key"] = str(key_path)

    def weights(version, key=None, data=blob, digest=sha):
        m = PolicyWeights()
        m.version, m.sha256, m.data = version, digest, data
        if key is not None:
            m.signature = list(signing.sign_weights(key, version, digest))
            m.key_id = signing.key_id(key.public_key())
        return m

    with graph_under_test("finetune", args, tmp_path, only=("policy",)) as g:
        probe = g.probe({"/robot/command": ArmCommand})
        obs = probe.publisher("/observation", Observation)
        w = probe.publisher("/policy/weights", PolicyWeights)

        def acts(i):
            n = len(probe.get("/robot/command"))
            obs.publish(observation(probe, i))
            probe.wait_for("/robot/command", n + 1, timeout=20)

        acts(0)
        tampered = bytes(blob[:-1]) + bytes([blob[-1] ^ 1])
        for n, m in enumerate(
            (
                weights(1),  # unsigned
                weights(2, key=stranger),  # forged: signed by another key
                weights(3, key=stranger, data=tampered, digest=hashlib.sha256(tampered).hexdigest()),
            ),
            start=1,
        ):
            w.publish(m)  # one at a time: the latched topic keeps only the newest
            deadline = time.monotonic() + 20
            while g.log("policy").count("refused weights") < n and time.monotonic() < deadline:
                time.sleep(0.05)
        acts(1)  # still acting, with the checkpoint's weights
        assert "now acting with learner weights" not in g.log("policy")
        w.publish(weights(4, key=learner_key))  # the learner's
        deadline = time.monotonic() + 20
        i = 2
        while "now acting with learner weights v4" not in g.log("policy") and time.monotonic() < deadline:
            acts(i)
            i += 1
        log = g.log("policy")
        g.assert_alive()
    assert "now acting with learner weights v4" in log
    assert "refused weights v1 (key none): unsigned weights" in log
    assert "refused weights v2" in log and "refused weights v3" in log and "does not verify" in log
    for v in (1, 2, 3):
        assert f"now acting with learner weights v{v}" not in log
