"""The README's claims that can be checked mechanically."""

from pathlib import Path

from seacucumber.conf import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.rst").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [s.name for s in SETTINGS if f"``{s.name}``" not in README]
    assert missing == []


def test_readme_gives_the_two_commands_the_makefile_has():
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert f"\n{target}: " in makefile
