"""The browser demo: session isolation, the video job, the API through gradio_client, and the
page in a real Chromium driven by Playwright."""

import json
import shutil
import socket

import numpy as np
import pytest

from app.demo import Limits, Settings, SharedModel, WebcamSession, track_video
from pavenet.errors import PavenetError


@pytest.fixture(scope="module")
def model(shipped_onnx):
    return SharedModel(shipped_onnx, "cpu")


def _rgb_frames(clip):
    return [np.ascontiguousarray(f.image[:, :, ::-1]) for f in clip.frames]


def test_webcam_sessions_keep_independent_identities(model, crossing_video):
    _, clip = crossing_video
    frames = _rgb_frames(clip)
    a, b = WebcamSession(model), WebcamSession(model)
    ids_a = [a.step(f)[1].track_ids.tolist() for f in frames[:20]]
    assert any(ids_a), "the shipped model found nobody in the example"
    ids_b = [b.step(f)[1].track_ids.tolist() for f in frames[:20]]
    assert ids_b == ids_a  # B starts its own ID counter: A's 20 frames did not shift it
    b.reset()
    more_a = [a.step(f)[1].track_ids.tolist() for f in frames[20:25]]
    fresh = WebcamSession(model)
    for f in frames[:20]:
        fresh.step(f)
    assert more_a == [fresh.step(f)[1].track_ids.tolist() for f in frames[20:25]]  # B's reset left A alone
    assert b.step(frames[0])[1].track_ids.tolist() == ids_a[0]


def test_webcam_drops_frames_that_arrive_while_busy(model, crossing_video):
    _, clip = crossing_video
    session = WebcamSession(model)
    with session._lock:  # a frame is being processed
        assert session.step(_rgb_frames(clip)[0]) is None
    assert session.dropped == 1
    image, _ = session.step(_rgb_frames(clip)[0])
    assert image.shape == clip.frames[0].image.shape and image.dtype == np.uint8


def test_video_job_streams_previews_then_consistent_outputs(model, crossing_video, tmp_path):
    path, clip = crossing_video
    updates = list(track_video(model, path, Settings(), out_dir=tmp_path, preview_every=5))
    previews = [u for u in updates if not u.done]
    assert len(previews) == 8 and all(u.preview.shape == (240, 320, 3) for u in previews)
    final = updates[-1]
    assert final.done and final.frame == len(clip)
    doc = json.loads(final.tracks_json.read_text())
    assert doc["num_frames"] == len(clip) == len(doc["frames"])
    seen = sorted({p["track_id"] for f in doc["frames"] for p in f["people"]})
    assert seen == doc["track_ids"] == [s["track_id"] for s in final.summary]
    for s in final.summary:
        present = [f["frame"] for f in doc["frames"] if any(p["track_id"] == s["track_id"] for p in f["people"])]
        assert s["frames"] == len(present) and s["first"] == present[0] and s["last"] == present[-1]
    assert final.video.suffix == ".webm" and final.video.stat().st_size > 1000


def test_video_job_refuses_bad_input_with_a_message(model, tmp_path, crossing_video):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(PavenetError, match="junk.mp4"):
        list(track_video(model, junk, Settings()))
    with pytest.raises(PavenetError, match="limit"):
        list(track_video(model, crossing_video[0], Settings(), Limits(max_seconds=0.5)))
    with pytest.raises(PavenetError, match="limit"):
        list(track_video(model, crossing_video[0], Settings(), Limits(max_upload_mb=1e-6)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    from app.ui import build_app

    port = _free_port()
    demo = build_app(model, Limits(max_upload_mb=50, max_seconds=60))
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        max_file_size="50mb")
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_gradio_client_tracks_a_video(server, crossing_video):
    from gradio_client import Client, handle_file

    path, clip = crossing_video
    client = Client(server, verbose=False)
    result = client.predict(handle_file(str(path)), 0.5, 0.3, False, True, api_name="/track_video")
    _, status, video, files, table, _ = result
    assert status.startswith(f"Done: {len(clip)} frames")
    video_path = video["video"] if isinstance(video, dict) else video
    assert str(video_path).endswith(".webm")
    json_file = next(f for f in files if str(f).endswith("tracks.json"))
    doc = json.loads(open(json_file).read())
    assert doc["num_frames"] == len(clip)
    rows = table["data"] if isinstance(table, dict) else table
    assert sorted(int(r[0]) for r in rows) == doc["track_ids"]
    assert sum(int(r[1]) for r in rows) == sum(len(f["people"]) for f in doc["frames"])


def test_page_in_a_real_browser(server, crossing_video, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium binary on this machine (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server)
            page.locator("#video-in input[type=file]").set_input_files(str(crossing_video[0]))
            page.locator("#track-button").click()
            page.get_by_text("Done:", exact=False).wait_for(timeout=120_000)
            video = page.locator("#video-out video")
            video.wait_for(timeout=30_000)
            played = video.evaluate("""v => new Promise(resolve => {
                v.muted = true;
                v.play().then(() => setTimeout(() => resolve([v.readyState, v.currentTime, v.error]), 800))
                        .catch(e => resolve([v.readyState, -1, String(e)]));
            })""")
            assert played[2] is None and played[0] >= 2 and played[1] > 0, played
            assert "tracks.json" in page.locator("#track-files").inner_text()
            hrefs = page.locator("#track-files a").evaluate_all("links => links.map(a => a.href)")
            assert any(h.endswith("tracks.json") for h in hrefs), hrefs
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "app.png").stat().st_size > 10_000


def test_expired_files_and_job_folders_are_removed(tmp_path):
    import time

    from app.demo import CacheSweeper, JobFolders, remove_older_than

    jobs = JobFolders(tmp_path / "jobs", max_age_s=60)
    old, new = jobs.new(), jobs.new()
    for folder in (old, new):
        (folder / "tracks.json").write_text("{}")
    # a negative age makes every file "expired" (the inode-change time cannot be set back)
    assert remove_older_than(jobs.root, -1, keep={str(new / "tracks.json")}) == 1
    assert not old.exists() and (new / "tracks.json").exists()
    sweeper = CacheSweeper([jobs.root], max_age_s=0.05, every_s=0.05).start()
    deadline = time.time() + 10
    while sweeper.removed < 1 and time.time() < deadline:
        time.sleep(0.05)
    sweeper.stop()
    assert not (new / "tracks.json").exists() and sweeper.removed >= 1 and jobs.root.exists()


def test_trails_forget_people_who_left(model, crossing_video):
    from pavenet.draw import new_trails
    from pavenet.poses import Poses

    trails = new_trails(length=5)
    frame = crossing_video[1].frames[0].image
    for tid in range(200):  # 200 people each seen once: only the last few are remembered
        kps = np.full((1, 17, 2), 10.0 + tid % 50, np.float32)
        poses = Poses(np.array([tid]), kps, np.ones((1, 17), np.float32), np.ones(1, np.float32),
                      np.array([[0, 0, 20, 20]], np.float32))
        trails.update(poses)
    assert len(trails) == 5 and sorted(trails.paths) == list(range(195, 200))
    assert frame is not None


def test_closed_webcam_session_releases_its_tracks(model, crossing_video):
    from app.ui import close_session

    session = WebcamSession(model)
    for f in _rgb_frames(crossing_video[1])[:10]:
        session.step(f)
    assert session.tracker.active_tracks > 0
    close_session(session)
    close_session(None)
    assert session.tracker.active_tracks == 0 and len(session.trails) == 0


def test_tiny_soak_finishes_every_job_and_empties_the_cache(shipped_onnx):
    """CI's small version of benchmarks/app_soak.py (correctness, not speed): a real server
    process, concurrent gradio_client jobs, a webcam session, and a cache window that expires."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("app_soak", Path(__file__).parents[1] / "benchmarks" / "app_soak.py")
    soak = importlib.util.module_from_spec(spec)
    sys.modules["app_soak"] = soak  # dataclasses look their module up there
    spec.loader.exec_module(soak)
    out = soak.soak(str(shipped_onnx), clients=2, jobs=2, frames=8, webcam_frames=10, cache_minutes=0.05,
                    wait_cache=True, log=lambda line: None)
    assert out["failed_jobs"] == 0 and out["webcam_failures"] == 0 and out["jobs"] == 4
    assert out["disk_jobs_end_mb"] > 0 and out["files_jobs_end"] > 0
    assert out["disk_after_window_mb"] < 0.05, out
