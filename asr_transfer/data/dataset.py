"""Training data: dumped features + token ids, length-bucketed batches, padding.

Batches never mix languages (each language has its own output heads). The batch
list of an epoch is a pure function of ``(seed, epoch)``, which is what lets a
killed run resume mid-epoch with exactly the same data order, and every DDP rank
gets the same number of batches so no rank waits forever in an all-reduce.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import torch

from asr_transfer.data.kaldi import DataError, read_table
from asr_transfer.data.sampling import balance_languages
from asr_transfer.text.normalize import Normalizer
from asr_transfer.text.tokenizer import Tokenizer

IGNORE_ID = -1


@dataclass
class Utterance:
    """One dumped utterance; ``tokens`` is ``None`` for unlabelled audio."""

    utt: str
    lang: str
    frames: int
    feats_ref: str
    tokens: list[int] | None


@dataclass
class Batch:
    """A padded batch of one language.

    Attributes:
        feats: ``(B, T, D)`` float32, zero padded.
        feat_lens: ``(B,)`` int64.
        ys: ``(B, L)`` int64 token ids, padded with ``IGNORE_ID``; ``None`` for unlabelled audio
            (as in ESPnet2, a batch without ``text`` is unlabelled).
        lang: language of every utterance in the batch.
        utts: utterance ids.
    """

    feats: torch.Tensor
    feat_lens: torch.Tensor
    ys: torch.Tensor | None
    lang: str
    utts: list[str]

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        """The batch on ``device``; ``non_blocking`` copies from pinned memory run asynchronously."""
        ys = None if self.ys is None else self.ys.to(device, non_blocking=non_blocking)
        feats = self.feats.to(device, non_blocking=non_blocking)
        return Batch(feats, self.feat_lens.to(device, non_blocking=non_blocking), ys, self.lang, self.utts)

    def pin_memory(self) -> Batch:
        """A copy in page-locked memory (called by the data loader's pinning thread for CUDA)."""
        ys = None if self.ys is None else self.ys.pin_memory()
        return Batch(self.feats.pin_memory(), self.feat_lens.pin_memory(), ys, self.lang, self.utts)


def load_dump(
    dump_dir: str | Path, lang: str, tokenizer: Tokenizer, max_frames: int = 3000, labelled: bool = True
) -> list[Utterance]:
    """Read a dumped data dir; every transcript must be inside the tokenizer's vocabulary.

    Utterances longer than ``max_frames`` are left out. With ``labelled=False`` the dump's
    ``text`` is never opened (unsupervised adaptation must not read target transcripts).
    """
    dump = Path(dump_dir)
    frames = read_table(dump / "utt2num_frames")
    scp = read_table(dump / "feats.scp")
    if not labelled:
        missing = [u for u in frames if u not in scp]
        if missing:
            raise DataError(
                f"{dump / 'utt2num_frames'}: utterance '{missing[0]}' has no features in feats.scp"
            )
        out = [Utterance(u, lang, int(n), scp[u], None) for u, n in frames.items() if int(n) <= max_frames]
        if not out:
            raise DataError(f"{dump}: no usable utterances")
        return out
    text = read_table(dump / "text", allow_empty_value=True)
    norm = Normalizer(lang)
    upper = tokenizer.upper_case  # an upper-case vocabulary (an ESPnet model's) gets upper-case text
    out: list[Utterance] = []
    for lineno, (utt, raw) in enumerate(text.items(), start=1):
        if utt not in scp:
            raise DataError(
                f"{dump / 'text'}:{lineno}: utterance '{utt}' has no features in {dump / 'feats.scp'}"
            )
        sentence = norm(raw).upper() if upper else norm(raw)
        unknown = tokenizer.unknown_chars(sentence)
        if unknown:
            raise DataError(
                f"{dump / 'text'}:{lineno}: characters outside the {lang} vocabulary: {' '.join(unknown)}"
            )
        n = int(frames[utt])
        if n <= max_frames:
            out.append(Utterance(utt, lang, n, scp[utt], tokenizer.encode(sentence)))
    if not out:
        raise DataError(f"{dump}: no usable utterances")
    return out


def make_batches(
    utts: list[Utterance],
    max_batch_frames: int,
    seed: int,
    epoch: int,
    world_size: int = 1,
    rank: int = 0,
    lang_temperature: float | None = None,
) -> list[list[Utterance]]:
    """Length-bucketed batches under a padded-frames budget, shuffled per epoch, this rank's share.

    A batch holds one language, and either labelled or unlabelled utterances. Utterances are
    sorted by length so padding is small; a batch's cost is
    ``len(batch) * longest``. The batch order is shuffled with ``seed + epoch``;
    the list is padded by repetition to a multiple of ``world_size`` so ranks agree.
    ``lang_temperature`` (``data.lang_temperature``) redraws the batches language-balanced
    (:func:`~asr_transfer.data.sampling.balance_languages`).

    Example:
        >>> us = [Utterance(str(i), "en", 100 + i, "", [1]) for i in range(10)]
        >>> [len(b) for b in make_batches(us, 450, seed=0, epoch=1)]
        [4, 2, 4]
        >>> len(make_batches(us, 450, 0, 1, world_size=2, rank=1))
        2
    """
    # one language per batch, and labelled and unlabelled utterances (a target stream's pseudo-labelled
    # part and the rest of its audio) never share one
    ordered = sorted(utts, key=lambda u: (u.lang, u.tokens is None, u.frames, u.utt))
    batches: list[list[Utterance]] = []
    cur: list[Utterance] = []
    for u in ordered:
        other_kind = bool(cur) and (cur[0].lang, cur[0].tokens is None) != (u.lang, u.tokens is None)
        if cur and ((len(cur) + 1) * u.frames > max_batch_frames or other_kind):
            batches.append(cur)
            cur = []
        cur.append(u)
    if cur:
        batches.append(cur)
    random.Random(seed * 100003 + epoch).shuffle(batches)
    if lang_temperature is not None:
        batches = balance_languages(batches, float(lang_temperature), seed, epoch)
    n = len(batches)
    batches += [batches[i % n] for i in range(-n % world_size)]
    return batches[rank::world_size]


def collate(batch: list[Utterance]) -> Batch:
    """Load the features of ``batch`` and pad them into a :class:`Batch` (``ys=None`` if unlabelled)."""
    # kaldiio returns read-only arrays; torch.tensor copies
    mats = [torch.tensor(kaldiio.load_mat(u.feats_ref)) for u in batch]
    lens = torch.tensor([m.shape[0] for m in mats])
    feats = torch.nn.utils.rnn.pad_sequence(mats, batch_first=True)
    ys = None
    if batch[0].tokens is not None:
        ys = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(u.tokens) for u in batch], batch_first=True, padding_value=IGNORE_ID
        )
    return Batch(feats, lens, ys, batch[0].lang, [u.utt for u in batch])


def stream_batches(
    streams: dict[str, list[Utterance]],
    max_batch_frames: int,
    seed: int,
    epoch: int,
    world_size: int = 1,
    rank: int = 0,
    lang_temperature: float | None = None,
) -> list[dict[str, list[Utterance]]]:
    """One epoch of steps over several streams: ``[{"source": batch, "target": batch}, ...]``.

    The first stream defines the epoch; every other stream is batched with its own seed
    and cycled, so step ``i`` takes its batch ``i mod len``. All of it is a pure function of
    ``(seed, epoch)``, which keeps mid-epoch resume exact. ``lang_temperature`` balances the
    languages of the first stream (:func:`make_batches`).

    Example:
        >>> src = [Utterance(f"s{i}", "en", 100, "", [1]) for i in range(6)]
        >>> tgt = [Utterance(f"t{i}", "en", 100, "", None) for i in range(2)]
        >>> steps = stream_batches({"source": src, "target": tgt}, 200, seed=0, epoch=1)
        >>> len(steps), [len(s["target"]) for s in steps]
        (3, [2, 2, 2])
    """
    names = list(streams)
    per_stream = {
        name: make_batches(
            utts,
            max_batch_frames,
            seed + 7919 * k,
            epoch,
            world_size,
            rank,
            lang_temperature if k == 0 else None,
        )
        for k, (name, utts) in enumerate(streams.items())
    }
    main = per_stream[names[0]]
    return [{name: per_stream[name][i % len(per_stream[name])] for name in names} for i in range(len(main))]
