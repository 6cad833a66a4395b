"""The original entry point: ``uvicorn karpathy_app:app``."""

import sys

from karpathy_gpt.api import create_app
from karpathy_gpt.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:  # a message, not uvicorn's traceback of the import
    sys.exit(f"error: {exc}")
