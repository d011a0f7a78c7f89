"""`python -m dashboards [--check]`."""

from __future__ import annotations

import sys

from .generate import main

sys.exit(main())
