"""The store contract: what every backend must do (see backends.py)."""
