"""Frame strips (PNG) and per-candidate scores (JSON) for chosen or random samples of an eval config.

    python src/inference.py --cfg-path configs/eval/actionbench/synthaction/embedded_patcher.yaml \
        model.pretrained=src/paxion/assets/kp_synth.safetensors --num-samples 10 --seed 42 --output out/inference
    python src/inference.py --cfg-path CONFIG --ids 17 42      # given video ids
Same as ``python -m paxion.inference``; no torchrun needed.
"""

import sys
from pathlib import Path

try:
    import paxion  # noqa: F401
except ImportError:  # not installed: use the checkout next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from paxion.cli.inference import main

if __name__ == "__main__":
    main(sys.argv[1:])
