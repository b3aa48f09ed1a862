"""critpath's planner, dispatcher and CLI. See README.md."""
from .flow import prefect_env_defaults as _defaults

_defaults()  # before Prefect reads its settings, when critpath is imported first
