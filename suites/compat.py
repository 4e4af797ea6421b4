"""Workarounds that let robomimic 0.3.0 (and transformers) import beside robosuite 1.5 and the CPU torch build.

robomimic imports ``mujoco_py`` (gone since robosuite 1.5, which uses the mujoco bindings) only for
``mujoco_py.builder.MujocoException``; and PyPI's torchvision is built against another torch, so
importing it fails on ``operator torchvision::nms does not exist`` unless the operator schemas it
registers fake kernels for are defined first. robomimic never calls those operators.
"""

from __future__ import annotations

import sys
import types

_done = False


def prepare_robomimic() -> None:
    """Make ``import robomimic...`` work here; idempotent."""
    global _done
    if _done:
        return
    prepare_torchvision()
    if "mujoco_py" not in sys.modules:
        mujoco_py = types.ModuleType("mujoco_py")
        builder = types.ModuleType("mujoco_py.builder")

        class MujocoException(Exception):
            """Stand-in: robosuite 1.5 raises mujoco's own errors instead."""

        builder.MujocoException = MujocoException
        mujoco_py.builder = builder
        sys.modules["mujoco_py"], sys.modules["mujoco_py.builder"] = mujoco_py, builder
    quiet_import("robosuite")
    quiet_import("robomimic")
    quiet_import("robomimic.macros")  # its "no private macro file" banner comes with the first submodule
    _done = True


def quiet_import(name: str) -> None:
    """Import robosuite or robomimic without their import-time notices on stderr (no private macro
    file, optional robot models): they are not ours to act on, and they would bury evalsuite's
    one-line messages. Their loggers keep warnings and errors after that."""
    import contextlib
    import importlib
    import io
    import logging

    if name in sys.modules:
        return
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            importlib.import_module(name)
        except ImportError:
            return  # the caller's own import says what is missing
    for logger_name in ("robosuite_logs", name):
        logger = logging.getLogger(logger_name)
        logger.setLevel(logging.ERROR)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setStream(sys.stderr)


def prepare_torchvision() -> None:
    """Make an installed, mismatched torchvision importable (robomimic, and transformers, which
    imports it whenever it is installed); nothing to do when it is absent or matches."""
    import importlib.util

    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    import torch

    try:
        import torchvision  # noqa: F401  (a matching build needs no help)
    except RuntimeError:
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _keep.append(lib)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        import torchvision  # noqa: F401


_keep: list = []  # the Library object must outlive the import
