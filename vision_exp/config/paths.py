"""Where the config tree lives: ``conf/`` beside the package in a checkout, inside it in a wheel."""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = next(
    (path for path in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf") if path.is_dir()),
    _PACKAGE_DIR.parent / "conf",
)
