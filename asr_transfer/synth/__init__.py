"""The offline benchmark corpus generator behind ``asr-transfer synth``.

voices (pseudo-speakers, espeak-ng) -> texts (transcripts) -> domains (devices, noise) ->
generate (plan, render in a process pool, write Kaldi dirs and corpus.json); presets say what to make.
"""
