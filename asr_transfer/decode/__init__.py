"""Decoding: batched CTC greedy, joint CTC/attention beam search, and transcribe()."""

from asr_transfer.decode.search import DecodeConfig, decode_batch
from asr_transfer.decode.transcribe import Recognizer

__all__ = ["DecodeConfig", "Recognizer", "decode_batch"]
