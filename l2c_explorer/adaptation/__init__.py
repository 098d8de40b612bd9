"""Cross-domain transfer: the same categories in a new domain (CCN+, CCN++, DANN, SRDC and a source-only baseline).

``DomainAdapter(method="ccn+").fit(source_folder, target_folder)`` predicts the source classes of the target
images. The loss terms are pure functions in :mod:`l2c_explorer.adaptation.functional`.
"""

from .adapter import CENTRE_INITS, COLUMN_SUMS, DEFAULT_EPOCHS, METHODS, DomainAdapter

__all__ = ["DomainAdapter", "METHODS", "DEFAULT_EPOCHS", "CENTRE_INITS", "COLUMN_SUMS"]
