"""Small modules of ``@service`` functions that tests load with ``load_module``."""
