"""l2c-explorer: discover the categories in a folder of unlabelled images by learning to cluster."""

__version__ = "0.1.0"
