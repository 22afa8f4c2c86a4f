"""SynthAction: a small synthetic ActionBench whose clips are real mp4 files in the original formats.

    from paxion.data.synthetic import generate
    generate("data/synthaction", seed=0, num_train=2000)   # then paths.data_root=data/synthaction

or ``python -m paxion.data.synthetic --out DIR --seed S``.
"""

from paxion.data.synthetic.generate import SynthConfig, generate, load_specs, render_spec  # noqa: F401
from paxion.data.synthetic.scenes import ACTION_PAIRS, ACTIONS, antonym_of, template_of  # noqa: F401
