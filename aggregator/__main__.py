"""python -m aggregator -> cli.main"""

from aggregator.cli import main

raise SystemExit(main())
