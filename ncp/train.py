"""Training: ``fit``, ``resume``, ``load_run``, ``evaluate`` and ``predict``.

The public names of :mod:`ncp_core.train`, so notebooks write::

    import ncp.train

    run = ncp.train.fit("japanese_vowels", out="runs/jv")
"""

from ncp_core.train import *  # noqa: F403
from ncp_core.train import __all__  # noqa: F401
