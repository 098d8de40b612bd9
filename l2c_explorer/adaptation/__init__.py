"""Cross-domain transfer: the same categories in a new domain (CCN+, CCN++, DANN, SRDC and a source-only baseline).

``DomainAdapter(method="ccn+").fit(source_folder, target_folder)`` predicts the source classes of the target
images. The estimator is in :mod:`~l2c_explorer.adaptation.adapter`, the training loop every method shares in
:mod:`~l2c_explorer.adaptation.trainer`, SRDC's state in :mod:`~l2c_explorer.adaptation.srdc`, and the loss
terms are pure functions in :mod:`l2c_explorer.adaptation.functional`.
"""

from ..options import ADAPTATION_METHODS as METHODS
from .adapter import DomainAdapter

__all__ = ["DomainAdapter", "METHODS"]
