"""Text: per-language normalisation, character sets and tokenizers."""
