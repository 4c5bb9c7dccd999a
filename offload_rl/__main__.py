"""``python -m offload_rl`` runs the CLI."""

import sys

from offload_rl.cli import main

sys.exit(main())
