"""``python -m cadenza.core.cli``: the same as the ``cadenza`` command."""

import sys

from cadenza.core.cli.main import main

sys.exit(main())
