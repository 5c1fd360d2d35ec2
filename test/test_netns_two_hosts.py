"""Two machines on one ROS domain, emulated with two network namespaces joined by a veth pair.

The "learner host" publishes PolicyWeights (4 MB, RELIABLE + TRANSIENT_LOCAL, as the learner does)
and the "robot PC" publishes Observations (100x100 rgb8) and ArmCommands, i.e. the transitions the
learner trains on. Each side runs in its own namespace with its own address (10.213.x.1/.2, private,
created here), discovery over the veth link (multicast + static peers), and Fast DDS over UDP only
(the shipped config/fastdds_two_hosts.xml without its shared-memory transport, so nothing can take
the /dev/shm shortcut the two processes would otherwise share). The test asserts delivery, checks the
bytes really crossed the veth link, and prints the transfer time and size.

Needs root and `ip netns` (Debian iproute2); skipped with the reason otherwise. The namespaces are
deleted (which deletes the veth pair) even when the test fails."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_BYTES = 4 * 1024 * 1024
N_WEIGHTS = 3
N_OBS = 50

PEER = r'''
import hashlib, json, sys, time, os
import numpy as np
import rclpy
from robofume_ros.msg import ArmCommand, Observation, PolicyWeights
from robofume_ros.ros import qos
from robofume_ros.ros.discovery import wait_matched
from robofume_ros.ros.convert import action_to_command, rgb_to_image

role, out, n_weights, n_obs, nbytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rclpy.init()
node = rclpy.create_node("netns_" + role)
clock = node.get_clock()
res = {"role": role, "weights": [], "obs": 0, "cmds": 0}
def now_s():
    return time.time()
def stamp_s(h):
    return h.stamp.sec + h.stamp.nanosec * 1e-9
deadline = time.monotonic() + 75
if role == "learner":
    pub = node.create_publisher(PolicyWeights, "/policy/weights", qos.LATCHED)
    obs_lat = []
    def on_obs(m):
        res["obs"] += 1
        obs_lat.append(now_s() - stamp_s(m.header))
    def on_cmd(m):
        res["cmds"] += 1
    sub_obs = node.create_subscription(Observation, "/observation", on_obs, qos.RELIABLE)
    sub_cmd = node.create_subscription(ArmCommand, "/robot/command", on_cmd, qos.RELIABLE)
    # every topic matches on its own: the weights' reader and both transition writers
    res["matched_after_s"] = wait_matched(node, pubs={pub: 1}, subs={sub_obs: 1, sub_cmd: 1}, timeout=60)
    rng = np.random.default_rng(0)
    for v in range(1, n_weights + 1):
        data = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        m = PolicyWeights()
        m.version, m.sha256 = v, hashlib.sha256(data).hexdigest()
        m.data = data
        m.header.stamp = clock.now().to_msg()
        pub.publish(m)
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.05)
    while (res["obs"] < n_obs or res["cmds"] < n_obs) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    res["obs_latency_ms_median"] = float(np.median(obs_lat) * 1000) if obs_lat else None
    t_end = time.monotonic() + 3     # keep the latched weights up while the actor finishes
    while time.monotonic() < t_end:
        rclpy.spin_once(node, timeout_sec=0.05)
else:
    def on_weights(m):
        t = now_s()
        ok = hashlib.sha256(bytes(m.data)).hexdigest() == m.sha256
        res["weights"].append({"version": int(m.version), "bytes": len(m.data), "sha_ok": ok,
                               "transfer_s": t - stamp_s(m.header)})
    sub_w = node.create_subscription(PolicyWeights, "/policy/weights", on_weights, qos.LATCHED)
    pub_obs = node.create_publisher(Observation, "/observation", qos.RELIABLE)
    pub_cmd = node.create_publisher(ArmCommand, "/robot/command", qos.RELIABLE)
    # the first command must not go out before the learner's command subscription exists
    # (volatile QoS drops it): wait for the observation AND the command reader, not one of them
    wait_matched(node, pubs={pub_obs: 1, pub_cmd: 1}, subs={sub_w: 1}, timeout=60)
    img = (np.arange(100 * 100 * 3) % 251).astype(np.uint8).reshape(100, 100, 3)
    sent = 0
    while time.monotonic() < deadline:
        if sent < n_obs:
            o = Observation()
            o.header.stamp = clock.now().to_msg()
            o.image = rgb_to_image(img, o.header.stamp)
            o.proprio = [0.1, 0.2, 0.3, 1.0]
            o.task, o.instruction, o.episode_index = "drawer-open", "open the drawer", sent
            pub_obs.publish(o)
            pub_cmd.publish(action_to_command(np.array([0.1, 0.0, -0.1, 1.0]), o.header.stamp, "policy"))
            sent += 1
        t_end = time.monotonic() + 0.1
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.02)
        if sent >= n_obs and len({w["version"] for w in res["weights"]}) >= n_weights:
            break
    res["obs"] = sent
Path = __import__("pathlib").Path
Path(out).write_text(json.dumps(res))
node.destroy_node()
rclpy.try_shutdown()
'''


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


class TwoHosts:
    """Two namespaces (robot PC, learner host) joined by a veth pair, torn down on exit."""

    def __init__(self, tag: str, subnet: int):
        self.ns = [f"rf{tag}a", f"rf{tag}b"]
        self.dev = [f"rf{tag}va", f"rf{tag}vb"]
        self.addr = [f"10.213.{subnet}.1", f"10.213.{subnet}.2"]

    def __enter__(self):
        try:
            for ns in self.ns:
                _ip("netns", "add", ns)
            _ip("link", "add", self.dev[0], "type", "veth", "peer", "name", self.dev[1])
            for ns, dev, addr in zip(self.ns, self.dev, self.addr):
                _ip("link", "set", dev, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        except Exception:
            self.__exit__()
            raise
        return self

    def env(self, i: int, domain: int, profile: Path, log_dir: Path) -> dict:
        """The environment of a process on host i: this domain, discovery over the veth link to the
        other host (multicast + its address as a static peer), Fast DDS over UDP only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROS_", "FASTDDS", "FASTRTPS"))}
        env.update(
            ROS_DOMAIN_ID=str(domain),
            ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
            ROS_STATIC_PEERS=self.addr[1 - i],
            FASTDDS_DEFAULT_PROFILES_FILE=str(profile),
            RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
            ROS_LOG_DIR=str(log_dir),
            PYTHONPATH=str(ROOT),
        )
        return env

    def rx_bytes(self, i: int) -> int:
        r = _ip("-n", self.ns[i], "-s", "-j", "link", "show", self.dev[i])
        return int(json.loads(r.stdout)[0]["stats64"]["rx"]["bytes"])

    def __exit__(self, *exc):
        for ns in self.ns:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.dev[0], check=False)  # only left if it never moved into a namespace


def _netns_unavailable() -> str:
    if not shutil.which("ip"):
        return "the ip command (Debian iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"rfprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace here: {r.stderr.strip()}"
    try:
        r = subprocess.run(
            ["ip", "-n", probe, "link", "add", "rfpv0", "type", "veth", "peer", "name", "rfpv1"],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            return f"cannot create a veth pair here: {r.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)  # deletes the probe veth too
    return ""


_reason = _netns_unavailable()
pytestmark = pytest.mark.skipif(bool(_reason), reason=_reason or "ok")


def udp_only_profile(tmp_path: Path) -> Path:
    """The shipped two-host profile with the shared-memory transport removed (forces the network)."""
    xml = (ROOT / "config" / "fastdds_two_hosts.xml").read_text()
    assert "robofume_udp" in xml and "<sendBufferSize>8388608</sendBufferSize>" in xml
    xml = (
        re.sub(r"<transport_id>robofume_shm</transport_id>\s*", "", xml.split("<participant")[0])
        + "<participant"
        + xml.split("<participant")[1].replace("<transport_id>robofume_shm</transport_id>", "")
    )
    xml = re.sub(r"<transport_descriptor>\s*<type>SHM</type>.*?</transport_descriptor>", "", xml, flags=re.S)
    assert "SHM" not in xml.split("-->", 1)[1] and "robofume_shm" not in xml.split("-->", 1)[1]
    p = tmp_path / "fastdds_udp_only.xml"
    p.write_text(xml)
    return p


def _remove_stale_namespaces():
    """Namespaces left by a run that was SIGKILLed (named after its pid, which is gone)."""
    r = _ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"^rf(\d+)[ab]\b", line)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "del", line.split()[0], check=False)


def test_weights_and_transitions_cross_between_namespaces(tmp_path):
    _remove_stale_namespaces()
    tag = str(os.getpid() % 100000)
    domain = 150 + os.getpid() % 60
    profile = udp_only_profile(tmp_path)
    procs = []
    with TwoHosts(tag, subnet=os.getpid() % 200 + 20) as net:
        rx_before = net.rx_bytes(0)
        try:
            for i, role in ((1, "learner"), (0, "actor")):  # ns a = robot PC, ns b = learner host
                env = net.env(i, domain, profile, tmp_path / "roslog")
                script = tmp_path / "peer.py"
                script.write_text(PEER)
                cmd = [
                    "ip",
                    "netns",
                    "exec",
                    net.ns[i],
                    sys.executable,
                    str(script),
                    role,
                    str(tmp_path / f"{role}.json"),
                    str(N_WEIGHTS),
                    str(N_OBS),
                    str(WEIGHTS_BYTES),
                ]
                log = open(tmp_path / f"{role}.log", "wb")
                procs.append(
                    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                )
            for p in procs:
                p.wait(timeout=100)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
        rx_actor = net.rx_bytes(0) - rx_before

    logs = {r: (tmp_path / f"{r}.log").read_text(errors="replace")[-3000:] for r in ("learner", "actor")}
    for r in ("learner", "actor"):
        assert (tmp_path / f"{r}.json").exists(), f"{r} wrote no result:\n{logs[r]}"
    learner = json.loads((tmp_path / "learner.json").read_text())
    actor = json.loads((tmp_path / "actor.json").read_text())
    got = {w["version"]: w for w in actor["weights"]}
    assert set(got) >= set(range(1, N_WEIGHTS + 1)), f"weights versions received {sorted(got)}\n{logs}"
    assert all(w["bytes"] == WEIGHTS_BYTES and w["sha_ok"] for w in got.values())
    assert learner["obs"] >= N_OBS and learner["cmds"] >= N_OBS, learner
    assert rx_actor >= N_WEIGHTS * WEIGHTS_BYTES, f"only {rx_actor} bytes crossed the veth link"
    times = sorted(w["transfer_s"] for w in got.values())
    print(
        f"\ncross-namespace (UDP over veth): {N_WEIGHTS} x PolicyWeights of {WEIGHTS_BYTES / 2**20:.1f} MiB "
        f"delivered, transfer {', '.join(f'{t * 1000:.0f}' for t in times)} ms "
        f"(~{WEIGHTS_BYTES / 2**20 / max(times[len(times) // 2], 1e-6):.0f} MiB/s median); "
        f"{learner['obs']} observations (30 KB) + {learner['cmds']} commands to the learner, median latency "
        f"{learner['obs_latency_ms_median']:.1f} ms; {rx_actor / 2**20:.1f} MiB received on the robot side's veth"
    )
    assert times[-1] < 10.0


def _wait(cond, timeout, runners, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in runners:
            r.poll()  # respawns a killed learner
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_outage_link_cut_and_learner_kill_across_hosts_lose_no_transition(tmp_path):
    """The fine-tuning graph split over two hosts (robot PC: sim, camera, policy, reward, task
    switcher, recorder; learner host: the learner). The link is cut for 20 s, then the learner is
    SIGKILLed mid-run; the learner backfills both gaps from the robot's recorder, and afterwards every
    episode it stored holds exactly the transitions of the robot's bag (`pytest -k outage`)."""
    pytest.importorskip("rclpy")
    from test_ros_finetune import bag_transitions, finetune_specs, stored_indices
    from tiny_models import tiny_learner_checkpoint, tiny_reward_model

    from robofume_ros.data.dataset import load_episodes
    from robofume_ros.ros.runner import GraphRunner

    _remove_stale_namespaces()
    models = (tiny_learner_checkpoint(tmp_path / "learner.pt"), tiny_reward_model(tmp_path / "reward"))
    specs, by = finetune_specs(tmp_path, models, record=True)
    by["recorder"].parameters["backfill_s"] = 600.0  # the fast sim's clock runs ahead of the wall clock
    learner_dir = tmp_path / "run" / "learner"
    tag = str(os.getpid() % 100000)
    domain = 150 + (os.getpid() + 7) % 60
    profile = udp_only_profile(tmp_path)
    with TwoHosts(tag + "o", subnet=(os.getpid() + 101) % 200 + 20) as net:
        runners = []
        try:
            for i, names in ((1, {"learner"}), (0, {s.name for s in specs} - {"learner"})):
                env = net.env(i, domain, profile, tmp_path / "roslog")
                wrapper = tmp_path / f"python_{net.ns[i]}.sh"  # every node of this host in its namespace
                wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {net.ns[i]} {sys.executable} "$@"\n')
                wrapper.chmod(0o755)
                r = GraphRunner([s for s in specs if s.name in names], tmp_path / f"host{i}", env, python=str(wrapper))
                runners.append(r.start())
            learner_log = runners[0].procs["learner"].log

            def stored():
                return set(stored_indices(learner_dir))

            _wait(lambda: len(stored()) >= 3, 240, runners, "3 episodes stored across the link")
            # cut the link for 20 s: the robot goes on, the learner hears nothing
            _ip("-n", net.ns[0], "link", "set", net.dev[0], "down")
            time.sleep(20)
            _ip("-n", net.ns[0], "link", "set", net.dev[0], "up")
            _ip("-n", net.ns[0], "route", "replace", "224.0.0.0/4", "dev", net.dev[0])
            n_cut = max(stored())
            _wait(lambda: max(stored()) >= n_cut + 3, 240, runners, "episodes stored after the link came back")
            # then kill the learner mid-run: it restarts and backfills from where its journal left off
            runners[0].procs["learner"].proc.send_signal(signal.SIGKILL)
            runners[0].procs["learner"].proc.wait(10)
            _wait(
                lambda: learner_log.read_text(errors="replace").count("backfill (start) done") >= 2,
                240,
                runners,
                "the restarted learner's backfill",
            )
            n_kill = max(stored())
            _wait(lambda: max(stored()) >= n_kill + 3, 240, runners, "episodes stored after the restart")
            log = learner_log.read_text(errors="replace")
        finally:
            for r in reversed(runners):  # the robot side first, then the learner
                r.stop(sigint_timeout=6.0, sigterm_timeout=3.0)
    assert "gap in the stream" in log, log[-3000:]  # the link cut was noticed and backfilled
    end = max(stored_indices(learner_dir))
    per_episode = bag_transitions(tmp_path / "bags")
    stored_len = {int(e.provenance["episode_index"]): len(e) for e in load_episodes(learner_dir / "online")}
    closed = [i for i in sorted(per_episode) if 0 < i < end]
    assert len(closed) >= 8
    missing = set(closed) - set(stored_len)
    assert not missing, f"episodes the learner lost across the cut and the kill: {sorted(missing)}"
    wrong = {i: (stored_len[i], per_episode[i]) for i in closed if stored_len[i] != per_episode[i]}
    assert not wrong, f"episode: (learner's transitions, bag's) differ: {wrong}"
    print(
        f"\nlink cut 20 s + learner SIGKILL across two hosts: {len(closed)} episodes, "
        f"{sum(stored_len[i] for i in closed)} transitions, learner store == robot bag"
    )
