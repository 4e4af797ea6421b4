"""Bad-input cases (see tests/bad_input_cases/__init__.py for the format): rollout videos.

Cases needing a suite that renders, a subprocess or a kill are tests of their own in
tests/test_video.py, listed here as DOC_ROWS."""

from evalsuite import video


def _index(text: str):
    def setup(run):
        (run / "videos").mkdir()
        (run / "videos" / "index.json").write_text(text)
    return setup


CASES = [
    ("video-size-huge", ["video", "{run}", "width=100000", "height=100000"], None,
     f"width=100000 must be <= {video.MAX_SIDE}"),
    ("video-height-huge", ["video", "{run}", "height=5000"], None, f"height=5000 must be <= {video.MAX_SIDE}"),
    ("video-index-empty", ["video", "{run}"], _index(""), "videos/index.json: damaged (empty)"),
    ("video-index-truncated", ["video", "{run}"], _index('{"t1/00000/A": "t1_00'), "videos/index.json: damaged"),
    ("video-index-foreign", ["video", "{run}"], _index('{"t1/00000/A": ["a.mp4"]}'), "videos/index.json: damaged"),
]

DOC_ROWS = [
    ("video-camera-unknown", "`evalsuite video RUN camera=bogus` (tests/test_video.py)",
     "`evalsuite: error: camera='bogus' is not a camera of suite 'fake-cam'; accepted: front, side`"),
    ("evaluate-camera-unknown", "`evalsuite evaluate ... video=all camera=bogus`, refused before any episode "
     "(tests/test_video.py)", "`evalsuite: error: camera='bogus' is not a camera of suite 'fake-cam'; accepted: "
     "front, side`"),
    ("report-video-index-damaged", "`evalsuite report RUN` with an empty or damaged `videos/index.json` "
     "(tests/test_video.py): the report builds, its videos shown as missing", "one line (exit 0): `videos: "
     "RUN/videos/index.json: damaged (empty) - ...; the report shows no videos`"),
    ("video-killed-mid-render", "`evalsuite video RUN` killed (SIGKILL) while it renders (tests/test_video.py)",
     "the videos, posters, index and report from before are intact; the render worker and ffmpeg die with it"),
    ("video-full-disk", "a full disk while `evalsuite video RUN` encodes (tests/test_video.py)",
     "`evalsuite: error: no episode of RUN was rendered: t1/00000/A: ... File too large ...`; the videos "
     "from before are intact"),
]
