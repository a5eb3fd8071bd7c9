"""The hybrid CTC/attention model over ESPnet2 modules."""

from asr_transfer.model.asr import HybridASR, ModelOutput, build_model

__all__ = ["HybridASR", "ModelOutput", "build_model"]
