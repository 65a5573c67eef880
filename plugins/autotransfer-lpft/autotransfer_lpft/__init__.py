"""LP-FT for autotransfer: a linear probe first, then fine-tuning from it (Kumar et al. 2022).

>>> import autotransfer
>>> result = autotransfer.fit("data/", strategies=("lp_ft", "full_finetune"))  # doctest: +SKIP
"""

from autotransfer_lpft.strategy import LinearProbe, LinearProbeThenFinetune, fit_linear_probe

__version__ = "0.1.0"

__all__ = ["LinearProbe", "LinearProbeThenFinetune", "__version__", "fit_linear_probe"]
