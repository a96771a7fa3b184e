"""Tests mirror the code: every module with logic has tests/unit/<package>/test_<module>.py, or an
integration test of the same name where it needs Ray or a process; the rest are listed with the
test that covers them."""

import ast

from tests.jobs import REPO

# Modules tested through another module's test file (data-only modules, or parts of one tested whole).
COVERED_ELSEWHERE = {
    "pipelines/tasks/answer.py": "tests/unit/tasks/test_registry.py",
    "pipelines/tasks/base.py": "tests/unit/tasks/test_registry.py",
    "pipelines/tasks/caption.py": "tests/unit/tasks/test_registry.py",
    "pipelines/tasks/detect.py": "tests/unit/tasks/test_registry.py",
    "pipelines/tasks/ocr.py": "tests/unit/tasks/test_registry.py",
    "pipelines/tasks/question.py": "tests/unit/tasks/test_registry.py",
    "pipelines/tasks/segment.py": "tests/unit/tasks/test_registry.py",
    "schemas/annotations.py": "tests/unit/schemas/test_rows.py",
    "schemas/arrow.py": "tests/unit/schemas/test_rows.py",
    "schemas/benchmark.py": "tests/integration/test_benchmark.py",
    "pipelines/devtools/timed_pipeline.py": "tests/integration/test_benchmark.py",
    "pipelines/model/hf_engine.py": "tests/unit/stages/test_generate.py",  # the model stage's default engine
    "pipelines/review/export/__init__.py": "tests/unit/jobs/test_export.py",  # export(): the job's whole path
}


def has_logic(path) -> bool:
    return any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in ast.walk(ast.parse(path.read_text())))


def mirrored_test(relative: str) -> list[str]:
    package, _, name = relative.removesuffix(".py").rpartition("/")
    inner = package.removeprefix("pipelines").strip("/")
    unit = "/".join(part for part in ("tests/unit", "schemas" if package == "schemas" else inner) if part)
    return [f"{unit}/test_{name}.py", f"tests/integration/test_{name}.py"]


def test_every_module_with_logic_has_a_test_file():
    missing = []
    for path in sorted([*(REPO / "pipelines").rglob("*.py"), *(REPO / "schemas").glob("*.py")]):
        relative = path.relative_to(REPO).as_posix()
        if (path.name == "__init__.py" and relative not in COVERED_ELSEWHERE) or not has_logic(path):
            continue
        candidates = [COVERED_ELSEWHERE[relative]] if relative in COVERED_ELSEWHERE else mirrored_test(relative)
        if not any((REPO / candidate).exists() for candidate in candidates):
            missing.append(f"{relative}: none of {candidates}")
    assert not missing, "\n".join(missing)


def test_every_test_file_mirrors_a_module_or_a_job():
    sources = [*(REPO / "pipelines").rglob("*.py"), *(REPO / "schemas").glob("*.py")]
    modules = {p.relative_to(REPO).as_posix() for p in sources}
    expected = {candidate for module in modules for candidate in mirrored_test(module)}
    jobs = {f"tests/unit/jobs/test_{p.stem}.py" for p in (REPO / "jobs").glob("*.py")}
    # tests of the whole repository rather than one module
    whole = {"tests/unit/test_readme.py", "tests/unit/test_layout.py", "tests/unit/test_packaging.py",
             "tests/unit/test_cluster.py"}
    strays = [p.relative_to(REPO).as_posix() for p in (REPO / "tests" / "unit").rglob("test_*.py")
              if p.relative_to(REPO).as_posix() not in expected | jobs | whole]
    assert not strays, strays
