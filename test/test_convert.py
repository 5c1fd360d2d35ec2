"""Image and command conversions the nodes use (no ROS graph needed)."""

from types import SimpleNamespace

import numpy as np
import pytest

from robofume_ros.ros.convert import ImageError, command_to_action, image_to_rgb, resize_rgb


def msg(img, enc):
    h, w = img.shape[:2]
    c = 1 if img.ndim == 2 else img.shape[2]
    return SimpleNamespace(encoding=enc, height=h, width=w, step=w * c, data=img.tobytes())


def test_encodings_decode_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(image_to_rgb(msg(rgb, "rgb8")), rgb)
    assert np.array_equal(image_to_rgb(msg(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(msg(rgba, "rgba8")), rgb)
    gray = rgb[:, :, 0].copy()
    assert np.array_equal(image_to_rgb(msg(gray, "mono8")), np.repeat(gray[:, :, None], 3, 2))


def test_padded_rows_are_cropped():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    padded = np.zeros((4, 16), np.uint8)
    padded[:, :15] = rgb.reshape(4, 15)
    m = SimpleNamespace(encoding="rgb8", height=4, width=5, step=16, data=padded.tobytes())
    assert np.array_equal(image_to_rgb(m), rgb)


@pytest.mark.parametrize(
    "bad,match",
    [
        (SimpleNamespace(encoding="yuv422", height=2, width=2, step=4, data=bytes(8)), "unsupported image encoding"),
        (SimpleNamespace(encoding="rgb8", height=2, width=2, step=6, data=bytes(5)), "expected step"),
        (SimpleNamespace(encoding="rgb8", height=0, width=0, step=0, data=b""), "size"),
        (SimpleNamespace(encoding="rgb8", height=2, width=4, step=6, data=bytes(12)), "smaller than width"),
    ],
)
def test_bad_frames_raise_clear_errors(bad, match):
    with pytest.raises(ImageError, match=match):
        image_to_rgb(bad)


def test_resize_and_crop():
    img = np.zeros((200, 200, 3), np.uint8)
    img[:100, :100] = 200  # top-left quadrant bright
    small = resize_rgb(img, (100, 100))
    assert small.shape == (100, 100, 3) and small[:50, :50].min() == 200 and small[50:, 50:].max() == 0
    assert resize_rgb(small, (100, 100)) is small  # same size: untouched
    odd = resize_rgb(np.zeros((480, 640, 3), np.uint8), (100, 100), crop=(80, 0, 480, 480))
    assert odd.shape == (100, 100, 3)
    with pytest.raises(ImageError, match="outside"):
        resize_rgb(img, (100, 100), crop=(150, 150, 100, 100))


def test_command_to_action():
    c = SimpleNamespace(
        translation=SimpleNamespace(x=0.1, y=0.2, z=0.3), rotation=SimpleNamespace(x=1, y=2, z=3), gripper=-1.0
    )
    assert command_to_action(c, 4).tolist() == [0.1, 0.2, 0.3, -1.0]
    assert command_to_action(c, 7).tolist() == [0.1, 0.2, 0.3, 1, 2, 3, -1.0]
    with pytest.raises(ValueError):
        command_to_action(c, 5)


def test_frames_thinned_to_the_control_rate_on_a_schedule():
    from robofume_ros.data.images import FrameThinner

    def kept(stamps_ms, rate_hz=10.0):
        t = FrameThinner(rate_hz)
        return [s for s in stamps_ms if t.keep(s * 10**6)]

    # a 30 Hz camera gives one frame per 100 ms period; a 20 Hz one every other frame
    assert kept([round(k * 1000 / 30) for k in range(31)]) == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    assert kept(range(0, 1001, 50)) == list(range(0, 1001, 100))
    # a source at the control rate whose ticks jitter (a loaded simulator) loses none
    jittery = [0, 115, 185, 300, 420, 480, 600, 700, 790, 905]
    assert kept(jittery) == jittery
    # a 12 Hz source averages the control rate, never above it
    twelve = kept([round(k * 1000 / 12) for k in range(121)])
    assert 99 <= len(twelve) <= 101 and min(b - a for a, b in zip(twelve, twelve[1:])) >= 70
    # the same frame twice counts once; a clock set back starts over; a stalled source resumes
    assert kept([0, 100, 100, 200]) == [0, 100, 200]
    assert kept([5000, 5100, 0, 100]) == [5000, 5100, 0, 100]
    assert kept([0, 100, 2000, 2050, 2100]) == [0, 100, 2000, 2100]
    with pytest.raises(ValueError, match="rate_hz"):
        FrameThinner(0.0)
