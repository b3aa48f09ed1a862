"""``python -m orchestrator`` is ``critpath``."""
from .cli import main

if __name__ == "__main__":
    main()
