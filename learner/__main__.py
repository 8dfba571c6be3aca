"""`python -m learner` runs the learner command line (train / predict)."""
import sys

from .cli import main

sys.exit(main())
