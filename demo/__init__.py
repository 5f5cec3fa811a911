"""`make demo`: the real pipeline on embedded defaults."""
