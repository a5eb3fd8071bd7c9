"""Check Kaldi data dirs and list every problem with file and line (``asr-transfer validate-data``).

Checks: sorted, unique ids in every table; every utterance in ``wav.scp`` has a transcript and a
speaker; ``spk2utt`` (when present) matches ``utt2spk``; utterance ids start with their speaker id;
audio exists, decodes, is 16 kHz mono, not empty and finite (no NaN/inf samples); ``utt2dur`` agrees with the
audio; transcripts, normalised as training normalises them (:class:`Normalizer`: case, punctuation),
use only the language's characters (language from ``--lang`` or ``utt2lang``; digits are errors:
the tokenizers have no digits, numbers must be spelt out). Every message names the file, line and
utterance. All problems are collected, printed, then summarised; the exit status is 1 when any
directory has an error.

Example:
    asr-transfer validate-data data/en_train_clean data/en_test_phone
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from asr_transfer.data.audio import SAMPLE_RATE, AudioError, audio_info, load_audio
from asr_transfer.data.kaldi import check_data_dir, parse_table
from asr_transfer.text.normalize import CHARSETS, Normalizer, out_of_charset

#: utt2dur may be rounded and codecs pad a little; a larger mismatch means the table is stale.
DURATION_TOLERANCE_S = 0.02


@dataclass
class Report:
    """Outcome of validating one data dir."""

    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    num_utts: int = 0
    num_speakers: int = 0
    seconds: float = 0.0
    #: out-of-charset character -> number of transcripts containing it
    bad_chars: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        if not self.seconds:
            audio = ""
        elif self.seconds < 360:
            audio = f", {self.seconds:.1f} s of audio"
        else:
            audio = f", {self.seconds / 3600:.2f} h of audio"
        chars = ""
        if self.bad_chars:
            listed = " ".join(f"{ch!r}x{n}" for ch, n in sorted(self.bad_chars.items()))
            chars = f"; characters outside the character set: {listed}"
        status = "OK" if not self.errors else "FAILED"
        return (
            f"{self.path}: {status}: {self.num_utts} utterances, {self.num_speakers} speakers{audio}; "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings{chars}"
        )


def validate_data_dir(
    path: str | Path,
    *,
    lang: str | None = None,
    check_audio: bool = True,
    full_decode: bool = False,
    sample_rate: int = SAMPLE_RATE,
) -> Report:
    """Validate one data dir and return every problem found.

    ``full_decode`` decodes whole files instead of a block at each end (slower; finds damage in
    the middle of compressed files).

    Example:
        >>> import tempfile, numpy as np
        >>> from asr_transfer.data.audio import write_audio
        >>> from asr_transfer.data.kaldi import write_data_dir
        >>> d = tempfile.mkdtemp()
        >>> write_audio(d + "/a.flac", np.zeros(1600, dtype=np.float32))
        >>> write_data_dir(d, wav={"s1-a": d + "/a.flac"}, text={"s1-a": "hi 2"}, utt2spk={"s1-a": "s1"})
        >>> report = validate_data_dir(d, lang="en")
        >>> [e.split(": ", 1)[1] for e in report.errors]
        ["utterance 's1-a': characters outside the 'en' character set: '2'"]
        >>> write_data_dir(d, wav={"s1-a": d + "/a.flac"}, text={"s1-a": "HI, YOU."}, utt2spk={"s1-a": "s1"})
        >>> validate_data_dir(d, lang="en").errors  # training lower-cases and drops punctuation
        []
    """
    path = Path(path)
    report = Report(path)
    data, problems = check_data_dir(path, require_text=True)
    report.errors.extend(problems)
    if data is None:
        return report
    report.num_utts = len(data.wav)
    report.num_speakers = len(set(data.utt2spk.values()))
    wav_lines = {e.key: e.line for e in parse_table(path / "wav.scp")[0]}

    spk_lines = {e.key: e.line for e in parse_table(path / "utt2spk")[0]}
    for utt, spk in data.utt2spk.items():
        if not utt.startswith(spk):
            report.errors.append(
                f"{path / 'utt2spk'}:{spk_lines[utt]}: utterance id '{utt}' "
                f"does not start with its speaker id '{spk}'"
                " (Kaldi sorts by utterance id and needs speakers contiguous)"
            )

    if data.text is not None:
        _check_text(report, path, data.text, lang, data.utt2lang)

    if check_audio:
        dur_lines = {e.key: e.line for e in parse_table(path / "utt2dur")[0]} if data.utt2dur else {}
        for utt, wav in data.wav.items():
            where = f"{path / 'wav.scp'}:{wav_lines[utt]}: utterance '{utt}'"
            try:
                if full_decode:
                    seconds = len(load_audio(wav, sample_rate=sample_rate, where=where)) / sample_rate
                else:
                    seconds = audio_info(wav, sample_rate=sample_rate, where=where).duration
            except AudioError as err:
                report.errors.append(str(err))
                continue
            report.seconds += seconds
            listed = (data.utt2dur or {}).get(utt)
            if listed is not None and abs(listed - seconds) > DURATION_TOLERANCE_S:
                report.errors.append(
                    f"{path / 'utt2dur'}:{dur_lines[utt]}: duration of '{utt}' is {listed:g} s "
                    f"but its audio lasts {seconds:.4f} s"
                )
    elif data.utt2dur:
        report.seconds = sum(data.utt2dur.values())
    return report


def _check_text(
    report: Report,
    path: Path,
    text: dict[str, str],
    lang: str | None,
    utt2lang: dict[str, str] | None,
) -> None:
    text_lines = {e.key: e.line for e in parse_table(path / "text")[0]}
    if lang is None and utt2lang is None:
        report.warnings.append(f"{path}: no --lang and no utt2lang: characters not checked")
        return
    unknown: set[str] = set()
    normalizers: dict[str, Normalizer] = {}
    for utt, transcript in text.items():
        utt_lang = lang or (utt2lang or {}).get(utt)
        if utt_lang is None:
            continue  # already reported as missing from utt2lang
        if utt_lang not in CHARSETS:
            unknown.add(utt_lang)
            continue
        norm = normalizers.setdefault(utt_lang, Normalizer(utt_lang))
        # what the tokenizer will see: the transcript as training normalises it
        normalised = norm(transcript)
        if not normalised:
            report.errors.append(
                f"{path / 'text'}:{text_lines[utt]}: utterance '{utt}': transcript {transcript!r} "
                "is empty once normalised (punctuation only)"
            )
            continue
        bad = out_of_charset(normalised, utt_lang)
        if bad:
            report.bad_chars.update(bad)
            listed = " ".join(repr(ch) for ch in bad)
            report.errors.append(
                f"{path / 'text'}:{text_lines[utt]}: utterance '{utt}': characters outside the "
                f"'{utt_lang}' character set: {listed}"
            )
    report.warnings.extend(
        f"{path}: language '{code}' has no character set in asr_transfer.text.normalize.CHARSETS: "
        "characters not checked"
        for code in sorted(unknown)
    )
