"""``python -m benchmarks [run|report] ...`` (see :func:`benchmarks.runner.main_cli`)."""
import sys

from benchmarks.runner import main_cli

if __name__ == "__main__":
    sys.exit(main_cli())
