"""eat-asd: anomalous machine sound detection with a LoRA-tuned EAT encoder and kNN memory banks.

Submodules import torch lazily where they need it, so light jobs (discovery,
metrics, reporting) run without it.
"""

__version__ = "0.1.0"
