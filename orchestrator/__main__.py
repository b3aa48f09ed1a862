"""``python -m orchestrator`` is ``critpath``."""
from .ui.cli import main

if __name__ == "__main__":
    main()
