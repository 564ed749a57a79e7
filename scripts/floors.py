"""Print the declared dependency floors as exact pins (``name==floor``), for the CI step that
installs exactly the floors and runs the suite: a floor that is not really enough fails there.

Reads ``install_requires`` and the ``test`` extra of the core's and every plugin's setup.cfg.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9][A-Za-z0-9.]*)\s*$")


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for cfg in [ROOT / "setup.cfg", *sorted(ROOT.glob("plugins/*/setup.cfg"))]:
        parser = configparser.ConfigParser()
        parser.read(cfg)
        lines = parser.get("options", "install_requires", fallback="").splitlines()
        lines += parser.get("options.extras_require", "test", fallback="").splitlines()
        for line in lines:
            match = FLOOR.match(line)
            if match:
                name = re.sub(r"\[.*\]", "", match.group(1)).lower()
                out[name] = match.group(2)
    return out


if __name__ == "__main__":
    sys.stdout.write("".join(f"{name}=={version}\n" for name, version in sorted(pins().items())))
