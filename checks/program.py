"""The `mailings` program (the console script, and ``python -m checks``): process-wide settings, then checks.cli.

Apart from checks.cli, so that the settings apply before the modules a command needs are imported."""

from __future__ import annotations

import gc
import sys

# The collector's default is a pass over the young objects every 700 new ones. Nearly all that a command makes
# lives until it ends (modules, the policy, lists of 100,000 addresses, a send log's events), so such passes
# find almost nothing; at 700 they cost a send several per cent of its time, about half of it while importing.
YOUNG_OBJECTS = 10_000
# A full pass every 100 passes over the middle generation, not every 10: it only ever finds as little.
MIDDLE_PASSES = 100


def main() -> int:
    """Run the command in sys.argv; its exit status."""
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, MIDDLE_PASSES)
    from checks.cli import main as command_line  # after the settings: its imports are most of a start

    # The modules loaded so far live until exit: no pass need look at them again.
    gc.freeze()
    try:
        return command_line()
    finally:
        # The process ends next: a last collection over every object it made (the mailings, their lists) would
        # only free memory that exiting frees anyway.
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
