"""``python -m alicemind.core.cli`` runs the ``alicemind`` command."""

import sys

from alicemind.core.cli import main

sys.exit(main())
