import sys

from penpay.cli import main

sys.exit(main())
