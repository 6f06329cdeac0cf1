import numpy as np
import pytest

from pavenet.errors import DataError
from pavenet.video import VideoReader, VideoWriter, read_image, read_video


def test_write_then_read(tmp_path):
    path = tmp_path / "a.mp4"
    with VideoWriter(path, fps=10) as w:
        for i in range(6):
            w.write(np.full((48, 64, 3), i * 40, np.uint8))
    assert not list(tmp_path.glob(".*partial*")), "no temporary file is left behind"
    frames = read_video(path)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert VideoReader(path).fps == pytest.approx(10)


def test_bad_videos(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(DataError, match="corrupt.mp4"):
        read_video(corrupt)
    empty = tmp_path / "empty.mp4"
    VideoWriter(empty).close()  # no frame: no file at all
    assert not empty.exists()
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    with pytest.raises(DataError, match="zero.mp4"):
        read_video(zero)
    with pytest.raises(DataError, match="unsupported video suffix"):
        VideoWriter(tmp_path / "x.gif")
    with pytest.raises(DataError, match="frame size"):
        with VideoWriter(tmp_path / "b.mp4") as w:
            w.write(np.zeros((8, 8, 3), np.uint8))
            w.write(np.zeros((8, 16, 3), np.uint8))
    assert (tmp_path / "b.mp4").exists(), "what was written before the error is kept"


def test_bad_images(tmp_path):
    with pytest.raises(DataError, match="no such image"):
        read_image(tmp_path / "x.jpg")
    (tmp_path / "y.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="y.jpg: not an image"):
        read_image(tmp_path / "y.jpg")
