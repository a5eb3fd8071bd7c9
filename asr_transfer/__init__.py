"""asr-transfer: adapt speech recognisers to new devices, noise and languages."""

__version__ = "0.1.0"
