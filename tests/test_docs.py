"""The README's claims that can be checked mechanically."""

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
