"""``python -m revsync``: the ``revsync`` command, so ``python -X ...`` options and
profilers (``python -m cProfile -m revsync ...``) can run it."""

from revsync.cli import app

if __name__ == "__main__":
    app(prog_name="revsync")
