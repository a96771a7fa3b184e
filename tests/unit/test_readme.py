"""The README and docs/ stay true: CI runs the README's test command, the README documents every flag and
column in under 250 lines, links every page of docs/, and every repository path they name exists."""

import re
from pathlib import Path

from schemas import LABEL_ROW_SCHEMA
from schemas.job import JobConfig

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
DOCS = {path: path.read_text() for path in sorted((REPO / "docs").glob("*.md"))}
PAGES = {REPO / "README.md": README, **DOCS}

MAX_README_LINES = 250
# Written paths are checked when they start in one of these; out/ and models/ are generated, never checked.
REPO_ROOTS = ("pipelines/", "schemas/", "jobs/", "cluster/", "tests/", "docs/", ".ci/")
REPO_FILES = ("README.md", "pyproject.toml", ".gitignore")
GENERATED = ("out/", "models/")
PLACEHOLDER = re.compile(r"[<>*{}\[\]|$…]|\.\.\.")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def _written_paths(text: str) -> set[str]:
    """Repository paths written in inline code (`pipelines/stages/decode.py`, `jobs/annotate.py --input ...`),
    less generated ones and placeholders (`tests/unit/<package>/test_<module>.py`)."""
    paths = set()
    for span in CODE_SPAN.findall(_prose(text)):
        for token in span.split():
            token = token.strip("(),;:'\"").rstrip(".")
            if token.startswith(GENERATED) or PLACEHOLDER.search(token):
                continue
            if token.startswith(REPO_ROOTS) or token in REPO_FILES:
                paths.add(token)
    return paths


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _prose(text).splitlines() if line.startswith("#")}


def _local_links(text: str) -> list[str]:
    return [target for target in LINK.findall(_prose(text)) if not re.match(r"[a-z]+:", target)]


def test_ci_runs_the_readme_test_command_verbatim():
    command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert command.endswith("-m pytest")
    assert command in README


def test_every_flag_is_in_the_usage():
    for name, field in JobConfig.model_fields.items():
        assert f"--{name.replace('_', '-')}" in README, name
        if field.default is True:  # a flag that is on by default is shown as its --no- form
            assert f"--no-{name.replace('_', '-')}" in README, name


def test_every_output_column_is_documented():
    for name in LABEL_ROW_SCHEMA.names:
        assert f"`{name}`" in README, name


def test_the_readme_reads_in_five_minutes():
    assert len(README.splitlines()) <= MAX_README_LINES


def test_the_readme_links_every_docs_page_and_only_existing_ones():
    linked = {target.split("#")[0] for target in _local_links(README) if target.startswith("docs/")}
    missing = sorted(target for target in linked if not (REPO / target).is_file())
    assert not missing, f"README links to missing docs pages: {missing}"
    unlinked = sorted(path.relative_to(REPO).as_posix() for path in DOCS if
                      path.relative_to(REPO).as_posix() not in linked)
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_links_between_pages_resolve():
    broken = []
    for page, text in PAGES.items():
        for target in _local_links(text):
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_written_repository_path_exists():
    missing = sorted(f"{page.relative_to(REPO)}: {path}" for page, text in PAGES.items()
                     for path in _written_paths(text) if not (REPO / path).exists())
    assert not missing, f"paths written in the README or docs/ that do not exist: {missing}"


def test_the_path_check_sees_paths_and_skips_generated_ones_and_placeholders():
    text = ("`pipelines/stages/decode.py`, `jobs/annotate.py --input tests/data/samples`, `README.md`,\n"
            "`out/demo`, `models/tiny-paligemma`, `tests/unit/<package>/test_<module>.py`, `--output/...`,\n"
            "```bash\npython jobs/not_checked_in_fences.py\n```\n`schemas.rows.LabelRow`")
    assert _written_paths(text) == {"pipelines/stages/decode.py", "jobs/annotate.py", "tests/data/samples",
                                    "README.md"}
