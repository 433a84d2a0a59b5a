"""Tenbin (天秤): decides where GPU work runs across a hybrid fleet, and runs it there."""

__version__ = "0.1.0"
