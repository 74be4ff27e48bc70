"""selfloop: a daemon that retrains a language model on its own judged output.

Importing the package is cheap on purpose: torch and transformers are imported
only by the modules that need them, so `selfloop --help` and `selfloop status`
answer instantly.
"""

__version__ = "0.1.0"
