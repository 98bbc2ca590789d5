"""``python -m mlframework``: the same as the ``mlframework`` command."""

import sys

from mlframework.cli.main import main

sys.exit(main())
