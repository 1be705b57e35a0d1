"""A deterministic synthetic ICS: people, their GP, ambulance and VCSE records, written as feeds.

``generate(out_dir, Parameters(...))`` writes the four feeds in their real shapes and a
``truth.json`` that states what the warehouse should find. See ``params.py`` for the causal story.
"""

from sprx.synthetic.generate import generate
from sprx.synthetic.params import Parameters

__all__ = ["Parameters", "generate"]
