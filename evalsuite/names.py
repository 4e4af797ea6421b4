"""The names of a run folder's files, in one place (``api.Run`` reads a folder through them;
every module that writes one of these files names it from here)."""

PLAN = "plan.json"  # every trial, under blinding codes
KEY = "blinding.json"  # code -> policy
JOURNAL = "episodes.jsonl"  # one record per episode attempt
RESULTS = "results.json"  # the analysis
RUN_INFO = "run_info.json"  # versions, commit, throughput, processes and threads
POLICY_NOTES = "policy_notes.json"  # what each policy said about itself
WORST_CASE = "worst_case.json"  # an MDP family's worst-case search
TRACKING = "tracking.json"  # the MLflow run it was logged to
LOCK = ".lock"  # held while a process writes the folder
VIDEOS = "videos"  # mp4s, posters and index.json
VIDEO_INDEX = "index.json"  # in VIDEOS: trial id -> file
FIGURES = "figures"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
REVIEW = "review.jsonl"  # blinded video review: one rating per line (evalsuite/review.py)
REVIEW_PLAN = "review_plan.json"  # the review's items, codes, order and seed
