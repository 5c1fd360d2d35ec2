"""Shared builders for the test_data_* tests (no tests here)."""

import numpy as np

from robofume_ros.data import bags as B
from robofume_ros.interfaces import topic_name
from robofume_ros.data.episode import Episode

T0 = 1_700_000_000_000_000_000


def make_chain(n_eps=3, T=8, size=16, P=5, A=4, seed=0, successes=None, source="online"):
    """Reset-free chain: episode k+1 starts on episode k's last observation."""
    rng = np.random.default_rng(seed)
    img0 = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    p0 = rng.normal(size=P).astype(np.float32)
    eps = []
    for k in range(n_eps):
        ok = True if successes is None else successes[k]
        imgs = rng.integers(0, 255, (T + 1, size, size, 3), dtype=np.uint8)
        imgs[0] = img0
        pr = rng.normal(size=(T + 1, P)).astype(np.float32)
        pr[0] = p0
        r = -np.ones(T, np.float32)
        if ok:
            r[-1] = 0
        eps.append(
            Episode(
                imgs,
                pr,
                rng.uniform(-1, 1, (T, A)).astype(np.float32),
                r,
                r == 0,
                f"instr {k % 2}",
                ["drawer-open", "drawer-close"][k % 2],
                source=source,
                success=ok,
                success_gt=np.arange(T + 1) == T if ok else np.zeros(T + 1, bool),
            )
        )
        img0, p0 = imgs[-1], pr[-1]
    return eps


def random_episode(T=10, size=16, P=3, A=4, seed=0, source="online", success=False, **kw):
    rng = np.random.default_rng(seed)
    r = -np.ones(T, np.float32)
    if success:
        r[-1] = 0
    return Episode(
        rng.integers(0, 255, (T + 1, size, size, 3), dtype=np.uint8),
        rng.normal(size=(T + 1, P)).astype(np.float32),
        rng.uniform(-1, 1, (T, A)).astype(np.float32),
        r,
        r == 0,
        "do it",
        "task-a",
        source=source,
        success=success,
        **kw,
    )


def write_stream(path, steps, store=None, **writer_kw):
    """steps: list of dicts with keys t (s), and any of obs=(img, proprio, instr, task, phase, ep),
    cmd=action, reward=(success, prob, ep), phase=(phase, task, instr, ep, reason),
    image=img (sensor_msgs/Image on /camera/image_raw), twist=(lin, ang)."""
    store = store or B.typestore()
    with B.BagWriter(path, store=store, **writer_kw) as w:
        for s in steps:
            ns = T0 + int(round(s["t"] * 1e9))
            if "phase" in s:
                ph, task, instr, ep, reason = s["phase"]
                w.write(
                    topic_name("task_phase"),
                    B.MSGTYPES["task_phase"],
                    B.make_task_phase(store, ns, ph, task, instr, ep, reason),
                    ns,
                )
            if "obs" in s:
                img, pr, instr, task, ph, ep = s["obs"]
                w.write(
                    topic_name("observation"),
                    B.MSGTYPES["observation"],
                    B.make_observation(store, ns, img, pr, instr, task, ph, ep),
                    ns,
                )
            if "image" in s:
                w.write(topic_name("image"), B.MSGTYPES["image"], B.make_image(store, ns, s["image"]), ns)
            if "cmd" in s:
                w.write(topic_name("command"), B.MSGTYPES["command"], B.make_command(store, ns, s["cmd"]), ns)
            if "twist" in s:
                V = store.types["geometry_msgs/msg/Vector3"]
                lin, ang = s["twist"]
                msg = store.types["geometry_msgs/msg/Twist"](linear=V(*map(float, lin)), angular=V(*map(float, ang)))
                w.write("/cmd_vel", "geometry_msgs/msg/Twist", msg, ns)
            if "reward" in s:
                ok, prob, ep = s["reward"]
                w.write(topic_name("reward"), B.MSGTYPES["reward"], B.make_reward(store, ns, prob, ok, 0.5, "", ep), ns)
    return path
