"""Language-balanced batches: shares follow the temperature, T=1 keeps every batch once, deterministic."""

from __future__ import annotations

from collections import Counter

from asr_transfer.data.dataset import Utterance, make_batches


def _utts() -> list[Utterance]:
    big = [Utterance(f"de{i}", "de", 100 + i, "", [1]) for i in range(160)]
    small = [Utterance(f"ro{i}", "ro", 100 + i, "", [1]) for i in range(10)]
    return big + small


def test_temperature_balances_languages_and_keeps_the_epoch_length() -> None:
    utts = _utts()
    plain = make_batches(utts, 400, seed=3, epoch=2)
    same = make_batches(utts, 400, seed=3, epoch=2, lang_temperature=1.0)
    # T = 1: natural proportions, every batch exactly once (only the order differs)
    assert sorted(u.utt for b in plain for u in b) == sorted(u.utt for b in same for u in b)
    assert len(same) == len(plain)
    hot = make_batches(utts, 400, seed=3, epoch=2, lang_temperature=100.0)
    assert len(hot) == len(plain)
    langs = Counter(b[0].lang for b in hot)
    assert abs(langs["ro"] - langs["de"]) <= 2  # near uniform: the small language is oversampled
    assert all(len({u.lang for u in b}) == 1 for b in hot)  # batches stay monolingual
    # a pure function of (seed, epoch): a resumed run sees the same batches; other epochs differ
    assert hot == make_batches(utts, 400, seed=3, epoch=2, lang_temperature=100.0)
    assert hot != make_batches(utts, 400, seed=3, epoch=3, lang_temperature=100.0)
    # DDP: ranks get equal shares of the balanced list
    r0 = make_batches(utts, 400, 3, 2, world_size=2, rank=0, lang_temperature=2.0)
    r1 = make_batches(utts, 400, 3, 2, world_size=2, rank=1, lang_temperature=2.0)
    assert len(r0) == len(r1)
