"""The Gradio Blocks page: a video tab, a webcam tab and the settings they share.

Thin by design: every handler calls :mod:`app.demo`, which calls :mod:`pavenet`. Errors reach the
page as one-line messages (``gr.Error``), never as tracebacks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from app.demo import CacheSweeper, JobFolders, Limits, Settings, SharedModel, WebcamSession, track_video
from pavenet.draw import people_count
from pavenet.errors import PavenetError

TITLE = "PAVENet: multi-person pose tracking"


def _settings(score_thr: float, keypoint_thr: float, smooth: bool, trails: bool) -> Settings:
    return Settings(float(score_thr), float(keypoint_thr), bool(smooth), bool(trails))


def summary_rows(summary: list[dict]) -> list[list]:
    """Per-ID table rows: ID, frames present, first, last, mean keypoint confidence."""
    return [[s["track_id"], s["frames"], s["first"], s["last"], round(s["mean_keypoint_score"], 3)] for s in summary]


def timeline_figure(summary: list[dict], num_frames: int):
    """A small matplotlib timeline: one bar per ID over the frames where it was present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pavenet.draw import id_color

    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(summary), 3) + 0.8), dpi=90)
    for row, s in enumerate(summary):
        b, g, r = id_color(s["track_id"])
        spans = [(a, e - a + 1) for a, e in s["segments"]]
        ax.broken_barh(spans, (row - 0.4, 0.8), color=(r / 255, g / 255, b / 255))
    ax.set_yticks(range(len(summary)), [str(s["track_id"]) for s in summary])
    ax.set_xlim(0, max(num_frames, 1))
    ax.set_xlabel("frame")
    ax.set_ylabel("track ID")
    ax.invert_yaxis()
    fig.tight_layout()
    plt.close(fig)
    return fig


def close_session(session: WebcamSession | None) -> None:
    """``gr.State`` delete callback: a closed or expired tab releases its tracker."""
    if session is not None:
        session.close()


def build_app(model: SharedModel, limits: Limits | None = None, examples: list[str] | None = None,
              concurrency: int = 2, jobs: JobFolders | None = None) -> gr.Blocks:
    """The page. ``model`` is shared read-only; trackers live in each session's ``gr.State``.

    Nothing is kept longer than ``limits.cache_minutes``: uploads and returned files in Gradio's
    cache and the app's job folders are deleted by a :class:`CacheSweeper` (and Gradio's own
    ``delete_cache``), and webcam sessions expire (their trackers are released) when idle that long
    or an hour after the tab closes. The sweeper is ``demo.pavenet_sweeper``.
    """
    limits = limits or Limits()
    jobs = jobs or JobFolders(max_age_s=limits.cache_seconds)
    age = int(max(limits.cache_seconds, 1))
    sweep_every = max(min(age // 4, 3600), 1)  # a file outlives the window by at most a quarter of it

    def run_video(path, score_thr, keypoint_thr, smooth, trails):
        if not path:
            raise gr.Error("Upload a video (or pick the example) first.")
        settings = _settings(score_thr, keypoint_thr, smooth, trails)
        try:
            for p in track_video(model, path, settings, limits, out_dir=jobs.new()):
                if not p.done:
                    total = f" of {p.total}" if p.total else ""
                    yield (p.preview, f"Tracking: frame {p.frame}{total}, {p.fps:.1f} FPS", gr.skip(), gr.skip(),
                           gr.skip(), gr.skip())
                else:
                    status = (f"Done: {p.frame} frames at {p.fps:.1f} FPS ({model.provider}), "
                              f"{len(p.summary)} track IDs.")
                    yield (gr.skip(), status, str(p.video), [str(p.tracks_json), str(p.tracks_csv)],
                           summary_rows(p.summary), timeline_figure(p.summary, p.frame))
        except PavenetError as exc:
            raise gr.Error(str(exc)) from None
        except Exception as exc:  # a decoder or runtime failure: a message, not a traceback
            raise gr.Error(f"Could not process this video ({type(exc).__name__}: {exc})") from None

    def webcam_frame(frame, session, score_thr, keypoint_thr, smooth, trails):
        if frame is None:
            return gr.skip(), session, gr.skip()
        settings = _settings(score_thr, keypoint_thr, smooth, trails)
        session = session or WebcamSession(model, settings)
        result = session.step(frame, settings)
        if result is None:  # arrived while the previous frame was being processed: dropped
            return gr.skip(), session, gr.skip()
        image, poses = result
        status = f"**{session.fps:.1f} FPS** · {people_count(len(poses))} · {session.dropped} frames dropped"
        return image, session, status

    def webcam_reset(session):
        if session is not None:
            session.reset()
        return None, session, "Identities reset."

    with gr.Blocks(title=TITLE, delete_cache=(sweep_every, age)) as demo:
        gr.Markdown(f"# {TITLE}\nEnd-to-end keypoint transformer: identities follow people by propagating "
                    "queries from frame to frame (no detector, no NMS).")
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                score_thr = gr.Slider(0.05, 0.95, value=model.base.thresholds.new_track_thr, step=0.05,
                                      label="Person score threshold (new tracks)")
                keypoint_thr = gr.Slider(0.0, 0.95, value=model.base.thresholds.keypoint_thr, step=0.05,
                                         label="Keypoint threshold (drawing)")
            with gr.Row():
                smooth = gr.Checkbox(value=False, label="Smoothing (One-Euro)")
                trails = gr.Checkbox(value=True, label="Trails")
                gr.Textbox(value=model.provider, label="Provider in use", interactive=False)
        settings_inputs = [score_thr, keypoint_thr, smooth, trails]
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(sources=["upload"], label="Input video", elem_id="video-in")
                    if examples:
                        gr.Examples(examples=[[e] for e in examples], inputs=[video_in], label="Synthetic example")
                    run = gr.Button("Track", variant="primary", elem_id="track-button")
                    status = gr.Markdown("Upload a video and press Track.", elem_id="video-status")
                with gr.Column():
                    preview = gr.Image(label="Live preview", type="numpy", interactive=False, elem_id="preview")
                    video_out = gr.Video(label="Annotated video", interactive=False, elem_id="video-out")
                    files = gr.File(label="tracks.json / tracks.csv", file_count="multiple", interactive=False,
                                    elem_id="track-files")
            with gr.Row():
                table = gr.Dataframe(headers=["ID", "frames", "first", "last", "mean keypoint conf."],
                                     label="Per-ID summary", interactive=False)
                plot = gr.Plot(label="Timeline: which ID is present when")
            run.click(run_video, [video_in, *settings_inputs], [preview, status, video_out, files, table, plot],
                      api_name="track_video", concurrency_limit=concurrency, concurrency_id="model")
        with gr.Tab("Webcam"):
            session = gr.State(None, time_to_live=age, delete_callback=close_session)
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                cam_out = gr.Image(label="Tracked", type="numpy", interactive=False)
            with gr.Row():
                cam_status = gr.Markdown("Allow the camera and press record.")
                reset = gr.Button("Reset identities")
            cam.stream(webcam_frame, [cam, session, *settings_inputs], [cam_out, session, cam_status],
                       stream_every=0.05, trigger_mode="always_last", concurrency_limit=concurrency,
                       concurrency_id="model", time_limit=3600, api_name="webcam_frame")
            reset.click(webcam_reset, [session], [cam_out, session, cam_status], api_name="webcam_reset")
            # The same step as a plain API call (gradio_client cannot drive streaming events): scripts,
            # the soak benchmark and tests send frames one by one into the same per-session state.
            step_api = gr.Button(visible=False)
            step_api.click(webcam_frame, [cam, session, *settings_inputs], [cam_out, session, cam_status],
                           api_name="webcam_step", concurrency_limit=concurrency, concurrency_id="model")
    cache = Path(getattr(demo, "GRADIO_CACHE", None) or Path(tempfile.gettempdir()) / "gradio")

    def examples_in_cache() -> set[str]:
        return {p for block in demo.blocks.values() for p in getattr(block, "keep_in_cache", ())}

    demo.pavenet_sweeper = CacheSweeper([jobs.root, cache], limits.cache_seconds, sweep_every,
                                        examples_in_cache).start()
    return demo


def example_videos(folder: Path, count: int = 1, frames: int = 90) -> list[str]:
    """Generate the bundled synthetic example(s) once into ``folder`` (needs the training package's
    generator; returns [] when it is not installed)."""
    try:
        from pavenet.synth import SynthConfig, generate_clip
        from pavenet.synth.config import suite_config
    except ImportError:
        return []
    from pavenet.video import VideoWriter

    out = []
    for i in range(count):
        path = folder / f"synthetic-crossing-{i}.webm"
        if not path.exists():
            clip = generate_clip(suite_config("crossing", SynthConfig(width=480, height=360)), "test", 1, i, frames)
            with VideoWriter(path, clip.fps) as writer:
                for f in clip.frames:
                    writer.write(f.image)
        out.append(str(path))
    return out
