import sys

from vision_exp.registry.cli import main

sys.exit(main())
