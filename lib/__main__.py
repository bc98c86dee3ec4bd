"""`python -m lib`: see lib.workbook.cli."""

import sys

from lib.workbook.cli import main

sys.exit(main())
