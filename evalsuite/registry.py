"""Registries of suites and policies, like Gymnasium's: specs registered by id, built lazily.

Built-ins are the flat ``BUILTIN`` lists of specs in the top-level ``suites`` and ``policies``
packages (read as data, registered on first use); third-party packages add theirs through the ``evalsuite.suites`` and
``evalsuite.policies`` entry-point groups. An entry point may name a spec, a list of specs, or a
function returning either.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from evalsuite.errors import UsageError, choices
from evalsuite.specs import PolicySpec, SuiteSpec

SpecT = TypeVar("SpecT", SuiteSpec, PolicySpec)


class Registry(Generic[SpecT]):
    """Specs by id. Registering an id twice raises; reads return copies, never the live dict."""

    def __init__(self, kind: str, spec_type: type[SpecT], builtin_module: str, group: str) -> None:
        self.kind = kind
        self.spec_type = spec_type
        self.builtin_module = builtin_module
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
        for spec in importlib.import_module(self.builtin_module).BUILTIN:
            self.register(spec)
        for ep in entry_points(group=self.group):
            try:
                loaded = ep.load()
                specs = loaded() if callable(loaded) and not isinstance(loaded, self.spec_type) else loaded
                if isinstance(specs, self.spec_type):
                    specs = [specs]
                for spec in specs:
                    self.register(spec)
            except Exception as exc:  # a broken plugin must say which plugin it is
                raise UsageError(f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc

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


suites: Registry[SuiteSpec] = Registry("suite", SuiteSpec, "suites", "evalsuite.suites")
policies: Registry[PolicySpec] = Registry("policy", PolicySpec, "policies", "evalsuite.policies")

