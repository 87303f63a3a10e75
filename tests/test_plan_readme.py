"""README.md's tiers table is exactly what the planner generates from the overlays."""

from kuberay_llm import toolchain
from kuberay_llm.plan.readme import BEGIN, END, readme_block


def test_readme_tiers_table_is_generated():
    readme = toolchain.REPO_ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    assert BEGIN in text and END in text, f"README.md lost its {BEGIN} ... {END} markers"
    start = text.index(BEGIN)
    current = text[start:text.index(END, start) + len(END)]
    assert current == readme_block(), "README tiers table is stale: replace it with `python -m kuberay_llm.plan.readme`"
