"""Blinded video review of a run folder (``evalsuite review RUN``): its episodes' videos, in a
random order under fresh codes, scored by people - success, furthest milestone, failure tags - or
compared two at a time on the same initial condition (A better / B better / tie).

Two files in the run folder. ``review_plan.json`` is written once, when the review starts: the
seed, the items in their order, each item's review code and the trials behind it (which video of a
pair is shown left is drawn there too), the milestones and failure tags offered. ``review.jsonl``
takes one line per rating, appended and fsynced before the rater's page moves on (as the operator
console's ``console.jsonl``), with the rater's name and the time. Everything is rebuilt from the two
on start, so a reload or a killed server loses nothing, and a rater is never given an item they
rated.

Blinding: a rater sees review codes only - drawn afresh per item, unrelated to the run's blinding
codes or trial ids (which a rater could correlate across episodes) - and videos served under the
item's code. The trial ids stay in the two files; the report (``evalsuite report RUN``) reads the
ratings through ``api.Run.review`` into its review section.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite import fsio, names
from evalsuite import plan as plan_mod
from evalsuite import video as video_mod
from evalsuite.api import REVIEW_KINDS, open_run
from evalsuite.errors import UsageError
from evalsuite.journal import EpisodeRecord

KINDS = REVIEW_KINDS
SCORE, COMPARE = KINDS
CHOICES = ("left", "right", "tie")  # a comparison's answer: the left video (A) better, the right (B), or a tie
# Failure tags offered for simulated runs: a fixed list (free text goes to the notes), so raters'
# tags can be counted and compared; a trial run offers its own task file's tags instead.
TAGS = ("missed the object", "lost the grasp", "stalled", "wrong target", "collision", "unsafe motion")
CODE_LETTERS = "ACDEFHJKLMNPRTUVWXY3479"  # no look-alikes (0/O, 1/I, 5/S, 8/B, 2/Z)
CODE_LENGTH = 4
MAX_NAME, MAX_NOTES = 60, 2000


@dataclass(frozen=True)
class Item:
    """One thing to rate: an episode to score, or two episodes of one initial condition to compare
    (``trials``: the episode, or the left and right ones)."""

    code: str
    kind: str  # score | compare
    task: str
    trials: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "kind": self.kind, "task": self.task, "trials": list(self.trials)}


@dataclass(frozen=True)
class Rating:
    """A rater's answer to an item: for a score, ``success``/``furthest`` (the index of the furthest
    milestone reached, -1: none)/``tags``/``notes``; for a comparison, ``choice`` (left | right | tie)."""

    success: bool = False
    furthest: int = -1
    tags: tuple[str, ...] = ()
    notes: str = ""
    choice: str = ""


def clips(run_dir: Path, final: dict[str, EpisodeRecord]) -> dict[str, Path]:
    """trial id -> its video, for every finished episode whose video is whole (videos/index.json)."""
    index = video_mod.read_index(run_dir)
    out = {}
    for trial, name in sorted(index.items()):
        path, _ = video_mod.clip_files(run_dir, trial, name)
        if path and trial in final and final[trial].is_outcome:
            out[trial] = run_dir / path
    return out


def _codes(rng: random.Random, n: int) -> list[str]:
    seen: set[str] = set()
    while len(seen) < n:
        seen.add("".join(rng.choice(CODE_LETTERS) for _ in range(CODE_LENGTH)))
    codes = sorted(seen)
    rng.shuffle(codes)
    return codes


def make_items(final: dict[str, EpisodeRecord], videos: dict[str, Path], seed: int) -> list[Item]:
    """Every episode with a video to score, and every two episodes of one task and initial condition
    by different policies to compare, under fresh codes, in a random order drawn from ``seed``;
    which of a pair is shown left is drawn from it too."""
    rng = random.Random(seed)
    records = [final[t] for t in sorted(videos)]
    pairs: list[tuple[str, str, str]] = []
    by_condition: dict[tuple[str, int], list[EpisodeRecord]] = {}
    for r in records:
        by_condition.setdefault((r.task, r.ic_index), []).append(r)
    for (task, _), group in sorted(by_condition.items()):
        for a, b in itertools.combinations(sorted(group, key=lambda r: r.policy_code), 2):
            if a.policy_code != b.policy_code:
                left, right = (a, b) if rng.random() < 0.5 else (b, a)
                pairs.append((task, left.trial_id, right.trial_id))
    codes = _codes(rng, len(records) + len(pairs))
    items = [Item(code, SCORE, r.task, (r.trial_id,)) for code, r in zip(codes, records, strict=False)]
    items += [Item(code, COMPARE, task, (left, right))
              for code, (task, left, right) in zip(codes[len(records):], pairs, strict=True)]
    rng.shuffle(items)
    return items


def milestones_of(final: dict[str, EpisodeRecord]) -> dict[str, list[str]]:
    """Each task's milestones, in the order its records list them (tasks without: absent)."""
    out: dict[str, list[str]] = {}
    for r in sorted(final.values(), key=lambda r: r.trial_id):
        if r.milestones and r.task not in out:
            out[r.task] = list(r.milestones)
    return out


def furthest_reached(record: EpisodeRecord, milestones: list[str]) -> int:
    """The index of the furthest milestone the episode reached (-1: none): the detector's answer."""
    return max((i for i, m in enumerate(milestones) if record.milestones.get(m) is not None), default=-1)


def _tags_for(run_dir: Path) -> list[str]:
    """A trial run's own failure tags (its task file), else the fixed list."""
    from evalsuite import trial as trial_mod

    path = run_dir / trial_mod.TRIAL_FILE
    if path.exists():
        tags = json.loads(path.read_text()).get("task", {}).get("failure_tags", [])
        if tags:
            return [str(t) for t in tags]
    return list(TAGS)


class Review:
    """The review of one run folder as raters see it. Thread-safe: every rating holds one lock."""

    def __init__(self, run_dir: Path, seed: int | None = None, raters: tuple[str, ...] = ()) -> None:
        self.run_dir, self.raters = run_dir, raters
        run = open_run(run_dir)
        final = run.final()
        videos = clips(run_dir, final)
        self.videos = videos
        plan_path = run_dir / names.REVIEW_PLAN
        if plan_path.exists():
            saved = plan_mod.read_json(plan_path)
            if seed is not None and seed != saved["seed"]:
                raise UsageError(f"{plan_path} was drawn with seed={saved['seed']}; leave seed= out to go on with it, "
                                 "or remove the review's files to start another review")
            self.items = [Item(i["code"], i["kind"], i["task"], tuple(i["trials"])) for i in saved["items"]]
            self.milestones: dict[str, list[str]] = saved["milestones"]
            self.tags: list[str] = saved["tags"]
            self.seed: int = saved["seed"]
        else:
            if not videos:
                raise UsageError(f"{run_dir} has no videos to review: render them with `evalsuite video {run_dir} "
                                 "video=all` (or evaluate with video=all)")
            self.seed = secrets.randbits(32) if seed is None else seed
            self.items = make_items(final, videos, self.seed)
            self.milestones, self.tags = milestones_of(final), _tags_for(run_dir)
            fsio.write_json(plan_path, {"seed": self.seed, "created": round(time.time(), 3),
                                        "items": [i.to_dict() for i in self.items], "milestones": self.milestones,
                                        "tags": self.tags})
        self.by_code = {i.code: i for i in self.items}
        self.unreviewed = sorted(set(videos) - {t for i in self.items for t in i.trials})  # rendered after the start
        self._lock = threading.Lock()
        path = run_dir / names.REVIEW
        self.rated: dict[tuple[str, str], dict[str, Any]] = {}  # (rater, item code) -> the rating
        for entry in run.review or []:
            self.rated.setdefault((entry["rater"], entry["item"]), entry)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        size, whole = os.fstat(self._fd).st_size, path.read_bytes().rfind(b"\n") + 1
        if whole < size:  # a line cut by a kill was never acknowledged: drop it, so the next one starts clean
            os.ftruncate(self._fd, whole)

    # --- what comes next --------------------------------------------------------------------------------

    def check_rater(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise UsageError("give your name")
        if len(name) > MAX_NAME:
            raise UsageError(f"a name of at most {MAX_NAME} characters, please")
        if self.raters and name not in self.raters:
            raise UsageError(f"{name!r} is not one of this review's raters; ask whoever started it")
        return name

    def left(self, rater: str, kind: str) -> list[Item]:
        """The items of ``kind`` the rater has not rated, in the review's order."""
        return [i for i in self.items if i.kind == kind and (rater, i.code) not in self.rated]

    def next_for(self, rater: str, kind: str) -> Item | None:
        if kind not in KINDS:
            raise UsageError(f"unknown kind of item {kind!r}; accepted: {', '.join(KINDS)}")
        with self._lock:
            return next(iter(self.left(rater, kind)), None)

    def item(self, code: str) -> Item:
        if code not in self.by_code:
            raise UsageError(f"no item {code!r} in this review")
        return self.by_code[code]

    def video(self, code: str, side: int) -> Path:
        item = self.item(code)
        if not 0 <= side < len(item.trials):
            raise UsageError(f"item {code} has no video {side + 1}")
        path = self.videos.get(item.trials[side])
        if path is None:
            raise UsageError(f"the video of item {code} is missing from videos/ (rendered again, or removed?)")
        return path

    # --- ratings ----------------------------------------------------------------------------------------

    def rate(self, rater: str, code: str, action: str, rating: Rating) -> None:
        """Journal the rating (append + fsync) before returning; a second rating of the same item by
        the same rater, an unknown action or an answer out of range is refused (UsageError)."""
        rater = self.check_rater(rater)
        item = self.item(code)
        if action not in KINDS:
            raise UsageError(f"unknown rater action {action!r}; accepted: {', '.join(KINDS)}")
        if action != item.kind:
            raise UsageError(f"item {code} is to {item.kind}, not to {action}")
        fields = self._fields(item, rating)
        with self._lock:
            if (rater, code) in self.rated:
                raise UsageError(f"you rated item {code} already; go on with the next one")
            entry = {"action": action, "rater": rater, "at": round(time.time(), 3), "item": code, "task": item.task,
                     "trials": list(item.trials), **fields}
            os.write(self._fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(self._fd)
            self.rated[rater, code] = entry

    def _fields(self, item: Item, rating: Rating) -> dict[str, Any]:
        if item.kind == COMPARE:
            if rating.choice not in CHOICES:
                raise UsageError(f"choose A, B or a tie (got {rating.choice!r})")
            return {"choice": rating.choice}
        milestones = self.milestones.get(item.task, [])
        if not -1 <= rating.furthest < len(milestones):
            raise UsageError(f"milestone {rating.furthest} is not one of this task's")
        unknown = [t for t in rating.tags if t not in self.tags]
        if unknown:
            raise UsageError(f"failure tag {unknown[0]!r} is not one of this review's")
        return {"success": rating.success, "furthest": rating.furthest,
                "milestone": milestones[rating.furthest] if rating.furthest >= 0 else None,
                "tags": list(rating.tags), "notes": rating.notes[:MAX_NOTES]}

    def progress(self) -> dict[str, dict[str, int]]:
        """rater -> kind -> items rated."""
        out: dict[str, dict[str, int]] = {}
        for (rater, code) in self.rated:
            counts = out.setdefault(rater, dict.fromkeys(KINDS, 0))
            counts[self.by_code[code].kind if code in self.by_code else SCORE] += 1
        return out

    def close(self) -> None:
        os.close(self._fd)
