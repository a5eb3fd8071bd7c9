"""Audio loading: 16 kHz mono float32, and errors that name the file and the wav.scp line."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import MP3

from asr_transfer.data.audio import AudioError, audio_info, convert_audio, load_audio, resample, write_audio

WHERE = "data/x/wav.scp:12"


def tone(seconds: float = 0.5, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    write_audio(path, tone())
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.shape == (8000,)
    assert np.abs(samples - tone()).max() < 1e-3
    assert audio_info(path).duration == 0.5


def _bad_files(tmp_path):
    x = tone()
    sf.write(tmp_path / "stereo.wav", np.stack([x, x], axis=1), 16000)
    sf.write(tmp_path / "8k.wav", tone(rate=8000), 8000)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    (tmp_path / "garbage.flac").write_bytes(b"this is not audio" * 100)
    write_audio(tmp_path / "good.flac", tone(2.0))
    data = (tmp_path / "good.flac").read_bytes()
    (tmp_path / "truncated.flac").write_bytes(data[: len(data) // 3])
    return {
        "stereo.wav": "audio has 2 channels, expected mono",
        "8k.wav": "sample rate is 8000 Hz, expected 16000 Hz",
        "empty.wav": "audio is empty (0 samples)",
        "garbage.flac": "corrupt or unreadable audio",
        "truncated.flac": "corrupt",
        "missing.flac": "audio file is missing",
    }


@pytest.mark.parametrize("reader", [load_audio, audio_info])
def test_bad_audio_is_named_with_file_and_line(tmp_path, reader):
    for name, what in _bad_files(tmp_path).items():
        with pytest.raises(AudioError) as err:
            reader(tmp_path / name, where=WHERE)
        assert str(err.value).startswith(f"{WHERE}: {tmp_path / name}: "), str(err.value)
        assert what in str(err.value)


def test_audio_error_is_a_data_error():
    from asr_transfer.data.kaldi import DataError

    assert issubclass(AudioError, DataError)


def test_any_rate_accepted_when_asked(tmp_path):
    sf.write(tmp_path / "a.wav", tone(rate=8000), 8000)
    assert load_audio(tmp_path / "a.wav", sample_rate=None).shape == (4000,)


def test_resample_keeps_the_tone():
    y = resample(tone(1.0, rate=48000), 48000, 16000)
    spectrum = np.abs(np.fft.rfft(y))
    assert len(y) == 16000 and np.argmax(spectrum) == 440


@pytest.mark.system_tool
@MP3
def test_convert_stereo_48k_mp3_to_16k_mono_flac(tmp_path):
    x = tone(1.0, rate=48000)
    sf.write(tmp_path / "a.mp3", np.stack([x, x], axis=1), 48000)
    frames = convert_audio(tmp_path / "a.mp3", tmp_path / "out" / "a.flac")
    y = load_audio(tmp_path / "out" / "a.flac")
    assert frames == len(y)
    assert abs(len(y) - 16000) < 1200  # MP3 encoder delay and padding
    assert np.argmax(np.abs(np.fft.rfft(y[:16000], n=16000))) == 440
