"""The contract is documented: every hook has a docstring and a section in the plugin guide."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gateway import hookspecs

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"


def test_there_are_hooks():
    assert {"register_sources", "register_sinks", "register_routes", "startup", "shutdown",
            "purge_expired", "subject_export", "subject_erase", "tenant_removed",
            "originate_call"} <= set(hookspecs.HOOK_NAMES)


def test_every_hook_has_a_section_in_the_guide():
    sections = set(re.findall(r"^### (\w+)\s*$", GUIDE.read_text(), flags=re.M))
    missing = [name for name in hookspecs.HOOK_NAMES if name not in sections]
    assert not missing, f"hooks without a section in docs/plugins.md: {missing}"


def test_every_hook_docstring_states_arguments_and_return():
    for name in hookspecs.HOOK_NAMES:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Return" in doc, f"{name}: the docstring must say what it returns"
        assert "None" in doc, f"{name}: the docstring must say what None means"
        for arg in inspect.signature(getattr(hookspecs, name)).parameters:
            assert arg in doc, f"{name}: argument {arg!r} is not documented"
