"""``python -m remote_runner``: the command line of :mod:`remote_runner.cli`."""

import sys

from remote_runner.cli import main

sys.exit(main())
