"""Re-exports one service of ``demo`` and adds one; loading both modules must count it once."""
from orchestrator.planning.model import service
from tests.servicemods.demo import build_revenue  # noqa: F401  (re-exported on purpose)

POOLS = {"warehouse": 2}


@service(after=["build_revenue"], estimate=1.0)
def publish():
    return "published"
