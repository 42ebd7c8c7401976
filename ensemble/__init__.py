"""k-fold ensemble pipeline for image classification (Kaggle Dog Breed Identification and friends)."""

__version__ = "0.1.0"
