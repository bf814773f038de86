"""Dispatch of approved (merged) mailings over SMTP."""
