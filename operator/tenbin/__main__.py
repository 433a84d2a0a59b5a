import sys

from tenbin.cli import main

sys.exit(main())
