"""The shared secret of the demo connection the core's tests make (``conftest.demo``).

A module of its own: ``conftest`` is a different module in each test folder, so importing
from it depends on which folder pytest collected last.
"""

SECRET = "s3cret-s3cret"
