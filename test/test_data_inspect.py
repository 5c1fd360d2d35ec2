import imageio.v2 as imageio
import numpy as np

from robofume_ros.data.dataset import DatasetWriter
from robofume_ros.data.inspect import annotate_frame, info_table, main
from test_data_helpers import random_episode


def _ds(tmp_path):
    w = DatasetWriter(tmp_path / "ds")
    w.append(random_episode(T=4, seed=1, source="target_demo", success=True))
    w.append(random_episode(T=3, seed=2, source="failure", success_gt=np.zeros(4, bool)))
    return tmp_path / "ds"


def test_info(tmp_path, capsys):
    ds = _ds(tmp_path)
    t = info_table(ds)
    assert "target_demo" in t and "failure" in t and "100.0%" in t and "actions (4-D, 7 steps)" in t
    assert main(["info", str(ds), "--json"]) == 0
    assert '"episodes": 2' in capsys.readouterr().out
    assert main(["info", str(tmp_path)]) == 2


def test_video_and_plot(tmp_path):
    ds = _ds(tmp_path)
    assert main(["video", str(ds), "-o", str(tmp_path / "v.gif"), "--episodes", "1", "--scale", "2"]) == 0
    frames = imageio.mimread(tmp_path / "v.gif")
    assert len(frames) == 4 and frames[0].shape[1] == 32
    assert main(["video", str(ds), "-o", str(tmp_path / "v.mp4")]) == 0
    assert (tmp_path / "v.mp4").stat().st_size > 0
    assert main(["video", str(ds), "-o", str(tmp_path / "x.mp4"), "--episodes", "9"]) == 2
    assert main(["plot", str(ds), "-o", str(tmp_path / "s.png")]) == 0
    assert imageio.imread(tmp_path / "s.png").shape[0] > 100


def test_annotation_draws_text():
    f = annotate_frame(np.zeros((10, 10, 3), np.uint8), ["hello"], scale=4)
    assert f.shape == (40 + 18, 40, 3) and f[40:].max() > 100  # white text on the strip
