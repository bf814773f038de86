"""Fixtures of the sender's tests: the in-process SMTP servers of tests/sender/smtpserver.py."""

from tests.sender.smtpserver import make_server, smtp_server, tls_files

__all__ = ["make_server", "smtp_server", "tls_files"]
