"""The corpus generator: determinism, Kaldi layout, speaker hold-out, domains, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_transfer.cli import main
from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.synth import domains as dom
from asr_transfer.synth.generate import generate, plan
from asr_transfer.synth.noise import NoiseBankError, find_noise_dir
from asr_transfer.synth.presets import PRESETS
from asr_transfer.synth.voices import (
    HELDOUT_VARIANTS,
    TEST_VARIANTS,
    TRAIN_VARIANTS,
    Espeak,
    Speaker,
    espeak_data_path,
)
from asr_transfer.text.normalize import out_of_charset

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small noise bank of real FLAC files (coloured noise stands in for the recordings)."""
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for cat in ("rain", "wind", "laugh", "crowd"):
        (root / cat).mkdir()
        for k in range(2):
            x = np.cumsum(rng.standard_normal(16000 * 2)) * 0.001
            sf.write(root / cat / f"{cat}{k}.flac", x - x.mean(), 16000, subtype="PCM_16")
    (root / "NOTICE.md").write_text("test noise, CC0\n")
    return root


def _checksums(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "audio").rglob("*.flac"))
    }


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory, noise_dir: Path) -> dict[str, Path]:
    """tiny rendered three times: seed 0 in one process, seed 0 in two workers (via the CLI), seed 1."""
    outs = {name: tmp_path_factory.mktemp(name) for name in ("a", "b", "c")}
    generate(TINY, outs["a"], seed=0, jobs=1, noise_dir=noise_dir)
    rc = main(["synth", "--preset", "tiny", "--out", str(outs["b"]), "--seed", "0", "--jobs", "2",
               "--noise-dir", str(noise_dir)])  # fmt: skip
    assert rc == 0
    generate(TINY, outs["c"], seed=1, jobs=1, noise_dir=noise_dir)
    return outs


def test_same_seed_gives_identical_audio_whatever_the_workers(corpora: dict[str, Path]) -> None:
    a, b = _checksums(corpora["a"]), _checksums(corpora["b"])
    assert len(a) == sum(lp.sizes[s] * len(lp.domains) for lp in TINY.langs for s in lp.sizes)
    assert a == b


def test_different_seed_gives_different_audio(corpora: dict[str, Path]) -> None:
    a, c = _checksums(corpora["a"]), _checksums(corpora["c"])
    assert set(a.values()).isdisjoint(c.values())


def test_every_data_dir_is_complete_kaldi_with_16k_mono_audio(corpora: dict[str, Path]) -> None:
    out = corpora["a"]
    corpus = json.loads((out / "corpus.json").read_text())
    expected = {f"{lp.lang}_{s}_{d}" for lp in TINY.langs for s in lp.sizes for d in lp.domains}
    assert set(corpus["dirs"]) == expected
    assert {p.name for p in (out / "data").iterdir()} == expected
    assert {"en_test_laugh", "en_train_farfield", "de_dev_clean", "ro_test_clean"} <= expected
    for name in sorted(expected):
        path = out / "data" / name
        for table in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "utt2lang", "utt2domain"):
            assert (path / table).is_file(), f"{name}/{table}"
        data = load_data_dir(path)
        lang, _, domain = name.split("_")
        assert len(data.utts) == corpus["dirs"][name]["utts"] > 0
        assert set(data.utt2lang.values()) == {lang} and set(data.utt2domain.values()) == {domain}
        for utt in data.utts:
            assert utt.startswith(data.utt2spk[utt])
            assert Path(data.wav[utt]).is_absolute()
            info = sf.info(data.wav[utt])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert info.frames > 0 and data.utt2dur[utt] == pytest.approx(info.frames / 16000, abs=1e-4)
            assert data.text[utt] and not out_of_charset(data.text[utt], lang)
    assert corpus["seed"] == 0 and corpus["preset"] == "tiny"
    assert corpus["engines"]["espeak-ng"]["version"]
    assert "test noise" in corpus["noise"]["notice"]
    assert (out / "NOISE-NOTICE.md").is_file()


def test_same_utterances_in_every_english_domain(corpora: dict[str, Path]) -> None:
    data = corpora["a"] / "data"
    base = load_data_dir(data / "en_test_clean")
    for domain in dom.DOMAINS:
        other = load_data_dir(data / f"en_test_{domain}")
        assert [u.rsplit("-", 1)[0] for u in other.utts] == [u.rsplit("-", 1)[0] for u in base.utts]
        assert list(other.text.values()) == list(base.text.values())


def test_test_speakers_and_voices_are_held_out(corpora: dict[str, Path]) -> None:
    corpus = json.loads((corpora["a"] / "corpus.json").read_text())
    speakers = corpus["voices"]["speakers"]
    data = corpora["a"] / "data"
    for lp in TINY.langs:
        spk = {s: set(load_data_dir(data / f"{lp.lang}_{s}_clean").utt2spk.values()) for s in lp.sizes}
        assert spk["test"].isdisjoint(spk["train"] | spk["dev"])
        variants = {s: {speakers[k]["voice"].partition("+")[2] for k in spk[s]} for s in spk}
        assert variants["test"] <= set(TEST_VARIANTS)
        assert variants["test"].isdisjoint(variants["train"] | variants["dev"])
        if "heldout" in spk:  # the held-out dev voices: neither trained on nor tested
            assert variants["heldout"] <= set(HELDOUT_VARIANTS)
            assert variants["heldout"].isdisjoint(variants["train"] | variants["dev"] | variants["test"])
    assert (data / "en_heldout_room").is_dir() and not (data / "de_heldout_clean").exists()


def test_mini_plan_texts_are_normalised_and_disjoint_across_splits() -> None:
    utts = plan(PRESETS["mini"], seed=0)
    langs = {u.lang for u in utts}
    assert {"en", "de", "fr", "es", "ro", "cs"} <= langs
    for lang in langs:
        by_split: dict[str, set[str]] = {}
        for u in utts:
            if u.lang == lang:
                assert not out_of_charset(u.transcript, lang), (lang, u.transcript)
                by_split.setdefault(u.split, set()).add(u.transcript)
        assert by_split["train"].isdisjoint(by_split["test"])
        assert by_split["dev"].isdisjoint(by_split["test"])
        for split, texts in by_split.items():
            if split != "heldout":
                assert texts.isdisjoint(by_split.get("heldout", set())), (lang, split)
    en = [u for u in utts if u.lang == "en"]
    assert len(en) == 2000 and en[0].domains == dom.DOMAINS
    assert sum(u.split == "heldout" for u in en) == 300


def test_the_heldout_split_changes_no_other_utterance() -> None:
    # the benchmark's source model and test sets were made before the split existed
    mini = PRESETS["mini"]
    without = dataclasses.replace(
        mini,
        langs=tuple(
            dataclasses.replace(
                lp,
                sizes={s: n for s, n in lp.sizes.items() if s != "heldout"},
                speakers={s: n for s, n in lp.speakers.items() if s != "heldout"},
            )
            for lp in mini.langs
        ),
    )
    utts = plan(mini, seed=1)
    assert [u for u in utts if u.split != "heldout"] == plan(without, seed=1)


def test_xling_preset_sits_between_mini_and_standard_for_the_targets() -> None:
    utts = plan(PRESETS["xling"], seed=0)
    count = {(u.lang, u.split): 0 for u in utts}
    for u in utts:
        count[u.lang, u.split] += 1
    mini = {(lp.lang, s): n for lp in PRESETS["mini"].langs for s, n in lp.sizes.items()}
    standard = {(lp.lang, s): n for lp in PRESETS["standard"].langs for s, n in lp.sizes.items()}
    assert {lang for lang, _ in count} == {"de", "fr", "es", "it", "pl", "ro", "cs", "uk", "ar"}
    for lang in ("ro", "cs", "uk", "ar"):
        for split in ("train", "test"):
            assert mini[lang, split] < count[lang, split] <= standard[lang, split], (lang, split)
    assert all(u.domains == ("clean",) for u in utts)


def test_voice_variants_exist_and_hold_out_is_disjoint() -> None:
    assert set(TRAIN_VARIANTS).isdisjoint(TEST_VARIANTS)
    assert set(HELDOUT_VARIANTS).isdisjoint(TRAIN_VARIANTS + TEST_VARIANTS)
    for variant in TRAIN_VARIANTS + TEST_VARIANTS + HELDOUT_VARIANTS:
        assert (espeak_data_path() / "voices" / "!v" / variant).is_file(), variant


def test_espeak_is_deterministic_across_calls_and_clock() -> None:
    engine = Espeak()
    spk = Speaker("x", "en", "en-us+f5", pitch=50, rate=170, range_=50, warp=1.0)  # f5 has breath noise
    first = engine.speak("three one four", spk)
    engine.speak("nine nine", Speaker("y", "en", "en-us+klatt4", pitch=30, rate=150, range_=40, warp=1.1))
    time.sleep(1.1)  # espeak-ng would otherwise seed its noise from the clock
    assert np.array_equal(first, engine.speak("three one four", spk))


def test_phone_domain_is_band_limited_and_noise_domains_hit_the_snr_range() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000) * 0.1
    y = dom.phone(x, rng)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spec[freqs > 4200].sum() < 1e-3 * spec.sum()
    clip = rng.standard_normal(8000)
    for _ in range(5):
        noisy = dom.add_noise(x, [clip], rng, vary_speed=True)
        snr = 10 * np.log10(np.sum(x**2) / np.sum((noisy - x) ** 2))
        assert dom.SNR_RANGE_DB[0] - 0.01 <= snr <= dom.SNR_RANGE_DB[1] + 0.01


def test_missing_noise_dir_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["synth", "--preset", "tiny", "--out", str(tmp_path / "o"), "--noise-dir", str(tmp_path / "no")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "make_noise_bank.sh" in err and "--noise-dir" in err and str(tmp_path / "no") in err
    monkeypatch.setenv("ASR_TRANSFER_NOISE_DIR", str(tmp_path / "gone"))
    with pytest.raises(NoiseBankError, match="ASR_TRANSFER_NOISE_DIR"):
        find_noise_dir()
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoiseBankError, match="has no recordings in"):
        generate(TINY, tmp_path / "o", seed=0, jobs=1, noise_dir=tmp_path / "empty")


def _snr_db(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2)))


@pytest.mark.parametrize("domain", dom.MILD_DOMAINS)
def test_paper_regime_domains_keep_the_shape_and_depend_only_on_the_rng(domain: str) -> None:
    x = np.random.default_rng(1).standard_normal(8000) * 0.05
    rirs = {"room": dom.room_rir_pool(2, np.random.default_rng(2))}
    noise = {d: [np.random.default_rng(3).standard_normal(3000)] for d in ("drizzle", "breeze")}
    first = dom.render(domain, x, np.random.default_rng(4), rirs, noise)
    assert first.shape == x.shape and first.dtype == np.float32
    assert np.array_equal(first, dom.render(domain, x, np.random.default_rng(4), rirs, noise))
    assert not np.array_equal(first, dom.render(domain, x, np.random.default_rng(5), rirs, noise))


def test_mild_noise_domains_hit_their_snr_range_above_the_hard_ones() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000) * 0.1
    clip = rng.standard_normal(8000)
    for domain in ("drizzle", "breeze"):
        low, high = dom.NOISE_SNR_DB[domain]
        assert low > dom.SNR_RANGE_DB[1]  # milder than every hard noise domain
        assert f"SNR {low:g}-{high:g} dB" in dom.DESCRIPTIONS[domain]
        snrs = [_snr_db(x, dom.render(domain, x, rng, {}, {domain: [clip]})) for _ in range(20)]
        assert low - 0.01 <= min(snrs) and max(snrs) <= high + 0.01
        assert max(snrs) - min(snrs) > (high - low) / 3  # drawn across the range, not fixed


def test_mic_is_band_limited_at_its_cutoff_with_faint_hiss() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(32000) * 0.1
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    band = (freqs > 300) & (freqs < 5000)
    for cutoff in (3000.0, dom.MIC_LOWPASS_HZ[0]):
        y = dom.mic(x, rng, lowpass_hz=(cutoff, cutoff))
        gain = np.abs(np.fft.rfft(y)) ** 2 / np.abs(np.fft.rfft(x)) ** 2
        # 4th-order low-pass: an octave above the cutoff at least 20 dB down (only the hiss is left)
        passband = np.median(gain[band & (freqs < cutoff)])
        assert np.median(gain[freqs > min(2 * cutoff, 7900)]) < 1e-2 * passband
    # the defaults: the speech band passes at about its level (peak of at most +5 dB, hiss 35-45 dB down)
    y = dom.mic(x, rng)
    ratio = np.sum(np.abs(np.fft.rfft(y))[band] ** 2) / np.sum(np.abs(np.fft.rfft(x))[band] ** 2)
    assert 0.8 < ratio < 10 ** (dom.MIC_PEAK_DB[1] / 10)
    assert np.array_equal(dom.mic(x, np.random.default_rng(7)), dom.mic(x, np.random.default_rng(7)))


def test_room_is_shorter_than_farfield_at_the_talkers_level() -> None:
    import pyroomacoustics as pra

    room = dom.room_rir_pool(4, np.random.default_rng(0))
    far = dom.make_rir_pool(4, np.random.default_rng(0))
    rt60 = [pra.experimental.measure_rt60(r, 16000) for r in room]
    assert all(0.5 * dom.ROOM_RT60_RANGE_S[0] <= t <= 1.5 * dom.ROOM_RT60_RANGE_S[1] for t in rt60), rt60
    assert max(rt60) < min(pra.experimental.measure_rt60(r, 16000) for r in far)
    assert all(np.max(np.abs(r)) == pytest.approx(1.0) for r in room)
    # the talker's level is kept (unlike farfield's), under a floor 45-55 dB down
    x = np.random.default_rng(1).standard_normal(16000) * 0.1
    for rir in room:
        y = dom.room(x, rir, np.random.default_rng(2))
        assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.01)
