"""``fnet-train`` (``scripts/train.py``): train a network on MNIST or Fashion-MNIST from the command line.

- ``command``: the run, from options to outputs (``main``; ``run`` is the console script);
- ``options``: the options, their types and their checks (``build_parser``, ``check_args``);
- ``models``: the models, the data layout each reads, and each one's training defaults;
- ``outputs``: the progress line, the final report, ``--json`` and ``--plot``;
- ``use``: ``--evaluate`` and ``--predict`` with a saved model.

Every option is described in ``docs/cli.md``.
"""

from fnet.cli.command import main, run
from fnet.cli.models import DEFAULT_LR, MODELS, build_model
from fnet.cli.options import CLI_SPELLING, build_parser, check_args, divergence_factor, xla_option
from fnet.cli.outputs import plot_history

__all__ = ["CLI_SPELLING", "DEFAULT_LR", "MODELS", "build_model", "build_parser", "check_args",
           "divergence_factor", "main", "plot_history", "run", "xla_option"]
