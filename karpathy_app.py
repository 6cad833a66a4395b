"""The original entry point: ``uvicorn karpathy_app:app``."""

from karpathy_gpt.api import create_app

app = create_app()
