"""`python -m server`: the same as the `memory-agent` command."""

import sys

from server.cli import main

sys.exit(main())
