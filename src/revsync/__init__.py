"""revsync: closed-won CRM revenue back to the ad platforms that produced it."""

__version__ = "0.1.0"
