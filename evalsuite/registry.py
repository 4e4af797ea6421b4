"""Registries of suites and policies, like Gymnasium's: specs registered by id, built lazily.

Every suite, policy and analysis section arrives through the ``evalsuite.suites``,
``evalsuite.policies`` and ``evalsuite.analyses`` entry-point groups, read on first use - the built-ins too (their flat ``BUILTIN`` lists, declared
in this project's pyproject.toml), so they use exactly the mechanism a third-party package has and
the core imports none of them. An entry point may name a spec, a list of specs, or a function
returning either.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Generic, TypeVar

from evalsuite.errors import UsageError, choices
from evalsuite.specs import AnalysisSpec, PolicySpec, SuiteSpec

SpecT = TypeVar("SpecT", SuiteSpec, PolicySpec, AnalysisSpec)


class Registry(Generic[SpecT]):
    """Specs by id. Registering an id twice raises; reads return copies, never the live dict."""

    def __init__(self, kind: str, spec_type: type[SpecT], group: str) -> None:
        self.kind = kind
        self.spec_type: type[SpecT] = spec_type
        self.group = group
        self._specs: dict[str, SpecT] = {}
        self._loaded = False

    def register(self, spec: SpecT) -> SpecT:
        if not isinstance(spec, self.spec_type):
            raise TypeError(f"expected a {self.spec_type.__name__}, got {type(spec).__name__}")
        if spec.id in self._specs:
            raise ValueError(f"{self.kind} id {spec.id!r} is already registered")
        self._specs[spec.id] = spec
        return spec

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in sorted(entry_points(group=self.group), key=lambda ep: (ep.name != "builtin", ep.name)):
            try:
                loaded = ep.load()
                specs = loaded() if callable(loaded) and not isinstance(loaded, self.spec_type) else loaded
                if isinstance(specs, self.spec_type):
                    specs = [specs]
                for spec in specs:
                    self.register(spec)
            except Exception as exc:  # a broken plugin must say which plugin it is, in one line
                reason = (str(exc).splitlines() or [""])[0]
                raise UsageError(f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to load: "
                                 f"{type(exc).__name__}: {reason}") from exc

    def get(self, spec_id: str) -> SpecT:
        self._ensure_loaded()
        try:
            return self._specs[spec_id]
        except KeyError:
            raise UsageError(f"unknown {self.kind} {spec_id!r}; accepted: {choices(self._specs)}") from None

    def all(self) -> dict[str, SpecT]:
        self._ensure_loaded()
        return dict(self._specs)

    def snapshot(self) -> tuple[dict[str, SpecT], bool]:
        """State for tests to restore (see tests/conftest.py)."""
        return dict(self._specs), self._loaded

    def restore(self, state: tuple[dict[str, SpecT], bool]) -> None:
        self._specs, self._loaded = dict(state[0]), state[1]


suites: Registry[SuiteSpec] = Registry("suite", SuiteSpec, "evalsuite.suites")
policies: Registry[PolicySpec] = Registry("policy", PolicySpec, "evalsuite.policies")
analyses: Registry[AnalysisSpec] = Registry("analysis", AnalysisSpec, "evalsuite.analyses")

