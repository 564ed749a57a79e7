"""The contract is documented: every hook has a docstring and a section in the plugin guide."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from gateway import hookspecs

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"


ROOT = Path(__file__).parents[1]


def test_there_are_hooks():
    assert set(hookspecs.HOOK_NAMES) == {
        "register_sources", "register_sinks", "register_routes", "register_tasks", "declare_settings",
        "startup", "shutdown", "purge_expired", "subject_export", "subject_erase", "tenant_removed",
        "user_logged_out"}


def _hooks_tested() -> set[str]:
    """Hook names named by ``@pytest.mark.hook("...")`` on a test anywhere in the suite."""
    named: set[str] = set()
    for path in [*ROOT.joinpath("tests").rglob("test_*.py"), *ROOT.joinpath("plugins").rglob("tests/test_*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test"):
                continue
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr == "hook" and deco.args
                        and isinstance(deco.args[0], ast.Constant)):
                    named.add(str(deco.args[0].value))
    return named


def test_every_hook_has_a_test():
    untested = sorted(set(hookspecs.HOOK_NAMES) - _hooks_tested())
    assert not untested, f"hooks no test is marked @pytest.mark.hook(...) for: {untested}"


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


def test_the_example_plugin_is_the_guides_worked_example_word_for_word():
    guide = GUIDE.read_text()
    section = guide[guide.index("## Worked example"):]
    block = section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]
    plugin = (ROOT / "tests" / "plugins" / "example_crm" / "example_crm" / "__init__.py").read_text()
    assert plugin.rstrip().endswith(block.rstrip())
