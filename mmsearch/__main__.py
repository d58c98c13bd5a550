"""``python -m mmsearch``."""

from .cli import run

if __name__ == "__main__":  # not when a decode process (spawn) imports the main module again
    run()
