"""``python -m checks``: the `mailings` program."""

import sys

from checks.program import main

sys.exit(main())
