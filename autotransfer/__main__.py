import sys

from autotransfer.cli import main

sys.exit(main())
