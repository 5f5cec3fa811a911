"""The README's claims that can be checked mechanically."""

import re
from pathlib import Path

from seacucumber.conf import settings_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()


def test_readme_settings_table_is_the_one_conf_makes():
    start = README.index(".. settings-table-start")
    end = README.index(".. settings-table-end")
    assert settings_table() in README[start:end], (
        "README's settings table is stale: paste `python -m seacucumber.conf` into it"
    )


def test_readme_gives_the_two_commands_the_makefile_has():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert f"\n{target}: " in makefile


def test_readme_and_docs_are_valid_restructuredtext():
    import docutils.core

    for path in [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]:
        docutils.core.publish_string(
            path.read_text(), writer_name="null",
            settings_overrides={"report_level": 2, "halt_level": 2},
        )


DOCS = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]


def section(text: str, title: str) -> str:
    """The body of the README section with this title (up to the next title)."""
    start = text.index(f"\n{title}\n{'=' * len(title)}\n")
    rest = text[start + 2 * len(title) + 3:]
    following = re.search(r"\n[^\n]+\n=+\n", rest)
    return rest[:following.start()] if following else rest


def test_benchmark_figures_are_linked_in_one_file():
    """benchmarks/emulator.md, events.md and ops.md are merged into BENCHMARKS.md at the top:
    no page names the old files, and every link to BENCHMARKS.md reaches the top-level file
    from where the page is."""
    linked = set()
    for path in DOCS:
        text = path.read_text()
        for old in ("benchmarks/emulator.md", "benchmarks/events.md", "benchmarks/ops.md"):
            assert old not in text, f"{path.name} still points to {old}"
        for target in re.findall(r"`[^`<]*<([^>`]*BENCHMARKS\.md)>`__?", text):
            assert (path.parent / target).resolve() == ROOT / "BENCHMARKS.md", (path, target)
            linked.add(path.name)
        assert "``BENCHMARKS.md``" not in text, f"{path.name}: make BENCHMARKS.md a link"
    assert {"README.rst", "emulator.rst", "events.rst", "ops.rst", "rate.rst",
            "reliability.rst"} <= linked


def test_readme_says_rabbitmq_needs_a_redis_for_the_shared_rate():
    for title in ("Set up", "Scaling workers across hosts"):
        body = section(README, title)
        assert "RabbitMQ" in body and "SEACUCUMBER_REDIS_URL" in body, title
        assert "no shared rate" in body, title


def test_readme_gives_django_ses_users_every_step():
    """Both places that address django-ses users ask for the same three steps."""
    for body in (section(README, "Set up"), section(README, "Migrating")):
        tail = body[body.index("django-ses"):]
        for step in ("EMAIL_BACKEND", "INSTALLED_APPS", "Celery workers"):
            assert step in tail[:600], step
    assert "``EMAIL_BACKEND`` only" not in README


def test_readme_describes_both_demo_brokers():
    body = section(README, "Try it")
    assert "two real ``celery worker`` processes" in body
    assert "runs one ``celery worker`` process, with no shared rate" in body


def test_benchmarks_file_shows_its_plots_and_names_its_commands():
    text = (ROOT / "BENCHMARKS.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, "BENCHMARKS.md shows no plot"
    for image in images:
        assert (ROOT / image).is_file(), image
    for script in re.findall(r"benchmarks/(\w+\.py)", text):
        assert (ROOT / "benchmarks" / script).is_file(), script
