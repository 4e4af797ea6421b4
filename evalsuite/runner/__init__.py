"""Running episodes: environment pools and executors (the seam for distributed engines)."""

from evalsuite.runner.executor import Executor, LocalExecutor, RunContext

__all__ = ["Executor", "LocalExecutor", "RunContext"]
