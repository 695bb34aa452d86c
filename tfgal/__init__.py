"""tfgal: robustness of galaxy morphology classifiers to noise and one-pixel attacks."""

__version__ = "0.1.0"
