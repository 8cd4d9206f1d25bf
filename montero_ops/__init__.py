"""Montero: the operations CLI for the Sistema Montero Docker stack."""

__version__ = "0.1.0"
