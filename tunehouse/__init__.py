"""tunehouse: self-hosted fine-tuning that speaks the OpenAI API."""

import os

# MKL's conditional numerical reproducibility. Without it MKL picks its code path for a product by the
# operands' memory alignment and the thread it runs on, so torch's fp32 attention on a CPU (whose small
# products are MKL's) gives a sequence other last bits in a batch than alone, and a served answer could
# depend on what it was batched with. MKL reads this once, at its first call: it is set on import, before
# anything computes. Matrix products measured as fast with it as without.
os.environ.setdefault("MKL_CBWR", "AUTO")

__version__ = "0.1.0"
