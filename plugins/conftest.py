"""The plugins' test helpers are importable from every plugin's tests.

pytest puts each test folder on ``sys.path`` only when it collects a test there; whole-call
tests run a telephony source and the Bitrix24 sink together and use the helpers of both
(``webex_fixtures``, ``placetel_testdata``, ``bitrix24_fakes``), also when run alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

for tests in sorted(Path(__file__).parent.glob("*/tests")):
    if str(tests) not in sys.path:
        sys.path.append(str(tests))
