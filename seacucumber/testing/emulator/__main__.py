"""``python -m seacucumber.testing.emulator``: the emulator as a server."""

from . import main

main()
