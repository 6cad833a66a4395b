"""Where the repository, the shared corpus and this interpreter's tools are."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "karpathy"
VENV_BIN = Path(sys.executable).parent
