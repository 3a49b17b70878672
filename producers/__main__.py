"""``python -m producers``: the bulk and replay command-line producers."""

from producers.cli import app

if __name__ == "__main__":
    app(prog_name="python -m producers")
