import sys

from edgecloud.evaluation.testbed.cli import main

sys.exit(main())
