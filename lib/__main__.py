"""`python -m lib`: see lib.cli."""

import sys

from lib.cli import main

sys.exit(main())
