"""Data: Kaldi data dirs, audio I/O, validation and (elsewhere in this package) features and batches."""
