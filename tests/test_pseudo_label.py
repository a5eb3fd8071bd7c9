"""`asr-transfer pseudo-label`: a valid data dir of the confident part, never reading target transcripts."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import cli, cli_as_user

from asr_transfer.data.audio import load_audio
from asr_transfer.data.kaldi import load_data_dir, read_table
from asr_transfer.decode import DecodeConfig, Recognizer
from asr_transfer.decode.greedy import ctc_confidence
from asr_transfer.decode.pseudo_label import select
from asr_transfer.decode.search import decode_batch_scored
from asr_transfer.text.normalize import Normalizer

TARGET = "en_train_phone"


@pytest.fixture
def target(tiny_corpus: Path, tmp_path: Path) -> Path:
    """A private copy of a real target training set (its audio paths stay valid)."""
    return Path(shutil.copytree(tiny_corpus / TARGET, tmp_path / TARGET))


def summary_of(out: Path) -> dict:
    return yaml.safe_load((out / "pseudo_label.yaml").read_text())


def files(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` by its relative path, ``d``'s own name written as ``OUT``."""
    return {
        str(p.relative_to(d)).replace(d.name, "OUT"): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_select_ranks_by_confidence_breaks_ties_by_id_and_never_keeps_empty() -> None:
    hyps = {"u1": "a", "u2": "b", "u3": "", "u4": "d", "u5": "e"}
    conf = {"u1": -0.2, "u2": -0.9, "u3": -0.01, "u4": -0.2, "u5": -0.5}
    assert select(hyps, conf, keep=0.6) == ["u1", "u4", "u5"]
    assert select(hyps, conf, keep=0.4) == ["u1", "u4"]
    assert select(hyps, conf, keep=1.0) == ["u1", "u2", "u4", "u5"]  # the empty one never
    assert select(dict(reversed(hyps.items())), conf, keep=0.2) == ["u1"]  # tie -> smaller id, any order


def test_pseudo_label_writes_a_valid_dir_of_the_most_confident_and_never_reads_target_text(
    tiny_exp: Path, target: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pl"
    args = ["pseudo-label", "--exp", tiny_exp, "--data", target, "--keep", "0.5", "--mode", "ctc_greedy"]
    assert cli(*args, "--out", out) == 0
    assert cli("validate-data", out, "--lang", "en") == 0
    ids = sorted(read_table(target / "wav.scp"))
    conf = {u: float(c) for u, c in read_table(out / "confidence").items()}
    hyps = read_table(out / "hyp_all", allow_empty_value=True)
    assert sorted(conf) == sorted(hyps) == ids
    kept = sorted(read_table(out / "wav.scp"))
    assert kept == select(hyps, conf, 0.5) and 0 < len(kept) <= round(0.5 * len(ids))
    assert read_table(out / "text") == {u: hyps[u] for u in kept}
    # the audio left without a pseudo-label: a data dir of its own, with no text at all
    rest = out / f"{out.name}_unlabelled"
    assert sorted(read_table(rest / "wav.scp")) == sorted(set(ids) - set(kept))
    assert not (rest / "text").exists() and summary_of(out)["unlabelled"] == len(ids) - len(kept)
    for name in ("wav.scp", "utt2spk", "utt2domain", "utt2dur"):
        assert read_table(out / name) == {u: v for u, v in read_table(target / name).items() if u in kept}
    summary = yaml.safe_load((out / "pseudo_label.yaml").read_text())
    assert (summary["kept"], summary["total"], summary["keep"]) == (len(kept), len(ids), 0.5)
    assert summary["decode"]["mode"] == "ctc_greedy" and summary["exp"] == str(tiny_exp)
    assert summary["mean_confidence"]["kept"] == pytest.approx(
        sum(conf[u] for u in kept) / len(kept), abs=1e-5
    )

    # the confidence is the mean log best CTC posterior over the frames that emit a token (blanks
    # left out); checked on the longest utterance, the one its batch does not pad (padding shifts
    # the last frames of the others a little)
    rec = Recognizer.from_exp(tiny_exp)
    waves = {u: load_audio(p) for u, p in read_table(target / "wav.scp").items()}
    longest = max(ids, key=lambda u: len(waves[u]))
    feats = rec.frontend(waves[longest])[None]
    with torch.no_grad():
        enc, lens, _ = rec.model.encode(feats, torch.tensor([feats.size(1)]))
        best, arg = rec.model.ctc_log_probs(enc, "en")[0, : lens[0]].max(-1)
        direct = (best[arg != 0].mean() if (arg != 0).any() else best.mean()).item()
    assert conf[longest] == pytest.approx(direct, abs=1e-4)

    # garbage or no target transcripts: byte-identical outputs (the file is never opened)
    (target / "text").write_bytes(b"\xff\xfe not kaldi at all\nzzz\n")
    assert cli(*args, "--out", tmp_path / "pl_garbage") == 0
    (target / "text").unlink()
    assert cli(*args, "--out", tmp_path / "pl_none") == 0
    assert files(tmp_path / "pl_garbage") == files(out) == files(tmp_path / "pl_none")

    # a finished dir is skipped, --overwrite redoes it
    stamp = (out / "pseudo_label.yaml").stat().st_mtime_ns
    assert cli(*args, "--out", out) == 0
    assert (out / "pseudo_label.yaml").stat().st_mtime_ns == stamp
    assert cli(*args, "--out", out, "--keep", "1.0", "--overwrite") == 0
    assert len(read_table(out / "wav.scp")) == sum(bool(h) for h in hyps.values())


def test_a_killed_run_leaves_nothing_that_looks_finished(
    tiny_exp: Path, target: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pl"
    stale = tmp_path / "pl.tmp"
    stale.mkdir()
    (stale / "text").write_text("half written\n")
    # a corrupt audio file stops the run: no OUT; the stale temporary dir is not mistaken for a result
    wav = read_table(target / "wav.scp")
    bad = sorted(wav)[-1]
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + b"\0" * 64)
    (target / "wav.scp").write_text(
        "".join(f"{u} {broken if u == bad else p}\n" for u, p in sorted(wav.items()))
    )
    args = ["--exp", tiny_exp, "--data", target, "--out", out, "--mode", "ctc_greedy"]
    assert cli_as_user("pseudo-label", *args) == 2
    assert not out.exists()
    (target / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wav.items())))
    assert cli("pseudo-label", "--exp", tiny_exp, "--data", target, "--out", out, "--mode", "ctc_greedy") == 0
    assert (out / "pseudo_label.yaml").is_file() and not stale.exists()


def test_clear_errors_name_the_file(tiny_exp: Path, target: Path, tmp_path: Path, capsys) -> None:
    def run(exp: Path, data: Path) -> str:
        args = ["--exp", exp, "--data", data, "--out", tmp_path / "o", "--mode", "ctc_greedy"]
        assert cli_as_user("pseudo-label", *args) == 2
        return capsys.readouterr().err

    assert f"{tmp_path / 'nope' / 'config.yaml'}: missing" in run(tmp_path / "nope", target)
    utt2spk = (target / "utt2spk").read_text()
    (target / "utt2spk").write_text("".join(reversed(utt2spk.splitlines(keepends=True))))
    assert f"{target / 'utt2spk'}:2: id" in run(tiny_exp, target)
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (empty / name).write_text("")
    assert f"{empty / 'wav.scp'}: no utterances" in run(tiny_exp, empty)
    assert not (tmp_path / "o").exists()


def test_beam_confidence_is_the_search_score_per_step_and_matches_espnet(
    tiny_exp: Path, target: Path
) -> None:
    rec = Recognizer.from_exp(tiny_exp)
    data = load_data_dir(target, skip_text=True)
    feats = [rec.frontend(load_audio(data.wav[u])) for u in data.utts[:3]]
    lens = torch.tensor([f.shape[0] for f in feats])
    batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    ours = decode_batch_scored(rec.model, batch, lens, "en", DecodeConfig(mode="beam", beam_size=3))
    ref = decode_batch_scored(rec.model, batch, lens, "en", DecodeConfig(mode="beam_espnet", beam_size=3))
    assert ours[0] == ref[0]
    assert ours[1] == pytest.approx(ref[1], abs=1e-4)
    assert all(c < 0 for c in ours[1])


def test_ctc_confidence_ranks_a_mostly_blank_hypothesis_below_a_confident_one() -> None:
    # A: nineteen sure blank frames and one hesitant token (noise: the rest deleted); B: every frame
    # at 0.9, half of them tokens. A mean over all frames ranked A first; blanks must not count.
    a = torch.tensor([[0.999, 0.001, 0.0]] * 19 + [[0.45, 0.0, 0.55]])
    b = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]] * 10)
    logp = torch.stack([a, b]).clamp_min(1e-9).log()
    conf_a, conf_b = ctc_confidence(logp, torch.tensor([20, 20])).tolist()
    assert conf_b > conf_a
    assert conf_a == pytest.approx(math.log(0.55), abs=1e-5)


def test_previous_round_reports_how_much_re_labelling_changed_the_labels(
    tiny_exp: Path, target: Path, tmp_path: Path, capsys
) -> None:
    args = ["pseudo-label", "--exp", tiny_exp, "--data", target, "--keep", "0.5", "--mode", "ctc_greedy"]
    assert cli(*args, "--out", tmp_path / "r1") == 0
    assert "change_from_previous" not in summary_of(tmp_path / "r1")
    hyps = read_table(tmp_path / "r1" / "hyp_all", allow_empty_value=True)
    # the same model again: nothing changed
    assert cli(*args, "--out", tmp_path / "same", "--previous", tmp_path / "r1") == 0
    change = summary_of(tmp_path / "same")["change_from_previous"]
    assert (change["word_change"], change["utts_changed"], change["utts"]) == (0.0, 0.0, len(hyps))
    # a previous round that had one more word in one utterance: one edit of all its words
    prev = Path(shutil.copytree(tmp_path / "r1", tmp_path / "prev"))
    edited = sorted(u for u, h in hyps.items() if h)[0]
    (prev / "hyp_all").write_text(
        "".join(f"{u} {h} zero\n" if u == edited else f"{u} {h}\n" for u, h in sorted(hyps.items()))
    )
    # words as the scorer counts them (the normaliser splits at the apostrophes these models spell)
    words = sum(len(Normalizer("en")(h).split()) for h in hyps.values()) + 1
    assert cli(*args, "--out", tmp_path / "r2", "--previous", prev) == 0
    change = summary_of(tmp_path / "r2")["change_from_previous"]
    assert change["word_change"] == round(100 / words, 2)
    assert change["utts_changed"] == round(100 / len(hyps), 2) and change["previous"] == str(prev)
    assert f"{change['word_change']:.2f} % of the previous round's words changed" in capsys.readouterr().out
    # a previous round of other audio, or no finished round at all: clear errors, nothing written
    (prev / "hyp_all").write_text("".join(f"{u} {h}\n" for u, h in sorted(hyps.items()) if u != edited))
    assert cli_as_user(*args, "--out", tmp_path / "r3", "--previous", prev) == 2
    assert f"{prev}: labels other utterances than {target}, e.g. ['{edited}']" in capsys.readouterr().err
    assert cli_as_user(*args, "--out", tmp_path / "r4", "--previous", tmp_path / "nope") == 2
    assert "not a finished pseudo-label dir" in capsys.readouterr().err
    assert not (tmp_path / "r3").exists() and not (tmp_path / "r4").exists()
