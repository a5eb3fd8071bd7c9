"""The adaptation section of `asr-transfer report`, on real decode dirs, against jiwer directly."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import jiwer
import pytest
import yaml

from asr_transfer.cli import main
from asr_transfer.data.kaldi import write_data_dir, write_table

VOCAB = "zero one two three four five six seven eight nine oh".split()
DOMAINS = ("clean", "phone", "laptop", "rain", "wind")


def refs(domain: str) -> dict[str, str]:
    """The same 24 sentences in every domain (Libri-Adapt style), under domain-specific ids."""
    rng = random.Random(0)
    return {
        f"spk{s}-{domain}-{i:02d}": " ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 9)))
        for s in range(3)
        for i in range(8)
    }


def decode(
    exp: Path, domain: str, p_err: float, dataset: str | None = None, utt2domain: bool = True
) -> dict[str, str]:
    """Write exp/decode_<dataset>/ as `asr-transfer decode` does (``utt2domain`` only when the data dir
    has one, which a plain Kaldi dir does not); returns the hypotheses."""
    rng = random.Random(f"{exp.name}-{domain}")
    ref = refs(domain)
    hyp = {}
    for utt, text in ref.items():
        words = [w if rng.random() > p_err else rng.choice(VOCAB) for w in text.split()]
        if rng.random() < p_err:
            words.insert(rng.randrange(len(words)), rng.choice(VOCAB))
        hyp[utt] = " ".join(words)
    dataset = dataset or f"en_test_{domain}"
    d = exp / f"decode_{dataset}"
    d.mkdir(parents=True)
    for name, table in (
        ("ref", ref),
        ("text", hyp),
        ("utt2spk", {u: u.split("-")[0] for u in ref}),
        ("utt2domain", {u: domain for u in ref} if utt2domain else None),
    ):
        if table is not None:
            (d / name).write_text("".join(f"{u} {v}\n" for u, v in sorted(table.items())))
    (d / "decode.yaml").write_text(yaml.safe_dump({"mode": "ctc_greedy", "data": f"data/{dataset}"}))
    return hyp


def system(root: Path, name: str, adapt: str | None, errs: dict[str, float]) -> dict[str, dict[str, str]]:
    exp = root / name
    exp.mkdir(parents=True)
    # a plain training run records adapt.method supervised (the loop writes every resolved section)
    plain = "{method: supervised, target: null, weights: {att: 0.7, ctc: 0.3}}"
    (exp / "config.yaml").write_text(f"model: {{encoder: {{num_blocks: 2}}}}\nadapt: {adapt or plain}\n")
    return {d: decode(exp, d, p) for d, p in errs.items()}


def wer(domains: list[str], hyps: list[dict[str, str]]) -> float:
    """Pooled WER by jiwer over the given domains' utterances."""
    r = [refs(d)[u] for d, h in zip(domains, hyps) for u in sorted(h)]
    h = [h[u] for h in hyps for u in sorted(h)]
    return 100 * jiwer.wer(r, h)


def table(md: str, heading: str) -> dict[str, dict[str, str]]:
    """A Markdown table under ``## heading`` as {row label: {column: cell}}."""
    lines = md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    header = rows[0]
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows[2:]}


@pytest.fixture
def exp_tree(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "exp"
    hyps = {"source": system(root, "source", None, dict.fromkeys(DOMAINS, 0.4))}
    # a dev-set decode is not a test set and must be ignored
    decode(root / "source", "phone", 0.9, dataset="en_dev_phone")
    for target in ("phone", "laptop", "rain", "wind"):
        cm = f"{{method: cmatch, target: {target}, labels: ctc_align, weights: {{cmatch: 10}}}}"
        hyps[f"cmatch_{target}"] = system(root, f"cmatch_{target}", cm, {target: 0.1, "clean": 0.45})
        mmd = f"{{method: mmd, target: {target}}}"
        hyps[f"mmd_{target}"] = system(root, f"mmd_{target}", mmd, {target: 0.38, "clean": 0.4})
    st = "{method: self_training, target: rain, name: ST keep 0.7}"
    hyps["st_rain"] = system(root, "st_rain", st, {"rain": 0.3})
    return root, hyps


def test_adaptation_tables_match_jiwer(exp_tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, hyps = exp_tree
    out = tmp_path / "report"
    names = ["source", *sorted(h for h in hyps if h != "source")]
    assert main(["report", *(str(root / n) for n in names), "--out", str(out), "--resamples", "300"]) == 0
    md = (out / "RESULTS.md").read_text()
    w = table(md, "Unsupervised adaptation: WER (%) on the target domains")
    assert list(w) == ["laptop", "phone", "rain", "wind", "Average", "Average (devices)", "Average (noise)"]
    assert list(w["phone"]) == ["Source-only", "ST keep 0.7", "MMD", "CMatch (ctc_align)"]  # method order
    # cells: jiwer on the target test set of the system adapted to that domain
    for d in ("phone", "laptop", "rain", "wind"):
        assert w[d]["Source-only"].strip("*") == f"{wer([d], [hyps['source'][d]]):.2f}"
        assert w[d]["MMD"].strip("*") == f"{wer([d], [hyps[f'mmd_{d}'][d]]):.2f}"
        assert w[d]["CMatch (ctc_align)"] == f"**{wer([d], [hyps[f'cmatch_{d}'][d]]):.2f}**"  # best
    assert w["rain"]["ST keep 0.7"] == f"{wer(['rain'], [hyps['st_rain']['rain']]):.2f}"
    assert w["phone"]["ST keep 0.7"] == "–" and w["Average"]["ST keep 0.7"] == "–"
    # averages pool the utterances of their domains
    groups = {"Average": ["laptop", "phone", "rain", "wind"], "Average (devices)": ["laptop", "phone"]}
    groups["Average (noise)"] = ["rain", "wind"]
    red = table(md, "Relative WER reduction against source-only (%)")
    for row, ds in groups.items():
        src = wer(ds, [hyps["source"][d] for d in ds])
        cm = wer(ds, [hyps[f"cmatch_{d}"][d] for d in ds])
        mmd = wer(ds, [hyps[f"mmd_{d}"][d] for d in ds])
        assert w[row]["Source-only"] == f"{src:.2f}" and w[row]["CMatch (ctc_align)"] == f"**{cm:.2f}**"
        for method, value in (("CMatch (ctc_align)", cm), ("MMD", mmd)):
            cell = red[row][method]
            point, low, high = (
                float(x) for x in cell.replace("[", "").replace("]", "").replace(",", "").split()[:3]
            )
            assert point == pytest.approx(round(100 * (src - value) / src, 1), abs=0.051)
            assert low <= point <= high
        assert red[row]["CMatch (ctc_align)"].endswith("†")  # 40 % -> 10 % word errors: clearly significant
    assert red["phone"]["ST keep 0.7"] == "–" and "Source-only" not in red["phone"]
    # against the best method: each method's WER minus the row's best method's, in points
    vs = table(md, "Against the best method (WER points)")
    assert list(vs) == list(w) and "Source-only" not in vs["phone"]
    for row, ds in [*groups.items(), ("rain", ["rain"])]:
        cm = wer(ds, [hyps[f"cmatch_{d}"][d] for d in ds])
        mmd = wer(ds, [hyps[f"mmd_{d}"][d] for d in ds])
        assert vs[row]["CMatch (ctc_align)"] == "best"
        point, low, high = (float(x) for x in vs[row]["MMD"].translate(str.maketrans("", "", "[],†")).split())
        assert point == pytest.approx(mmd - cm, abs=0.006) and low <= point <= high
        assert vs[row]["MMD"].endswith("†")  # 38 % -> 10 % word errors: clearly behind
    assert vs["rain"]["ST keep 0.7"] != "–" and vs["Average"]["ST keep 0.7"] == "–"
    # forgetting: mean clean WER over the method's adapted experiments, next to the source model's
    f = table(md, "Forgetting: source-domain test WER (%)")
    clean = [wer(["clean"], [hyps[f"cmatch_{d}"]["clean"]]) for d in ("phone", "laptop", "rain", "wind")]
    src_clean = wer(["clean"], [hyps["source"]["clean"]])
    assert f["CMatch (ctc_align)"]["clean WER after adaptation (mean)"] == f"{sum(clean) / 4:.2f}"
    assert f["CMatch (ctc_align)"]["clean WER source model"] == f"{src_clean:.2f}"
    assert f["CMatch (ctc_align)"]["experiments"] == "4 of 4"
    assert f["ST keep 0.7"]["experiments"] == "0 of 1" and f["ST keep 0.7"]["change"] == "–"
    assert "No test decode of the target domain" not in md
    assert "against the continued-training control" not in md  # no control among the systems
    page = (out / "report.html").read_text()
    assert "<h2>Unsupervised adaptation: WER (%) on the target domains</h2>" in page
    assert "<th>CMatch (ctc_align)</th>" in page and "<td><b>" in page


def test_reduction_against_the_continued_training_control(
    exp_tree: tuple[Path, dict], tmp_path: Path
) -> None:
    root, hyps = exp_tree
    # the control: source terms only, one run per target domain; between the source model and CMatch
    for target in ("phone", "rain"):
        hyps[f"ctl_{target}"] = system(
            root, f"ctl_{target}", f"{{method: source_only, target: {target}}}", {target: 0.3}
        )
    out = tmp_path / "report"
    names = ["source", "ctl_phone", "ctl_rain", "cmatch_phone", "cmatch_rain", "mmd_phone", "st_rain"]
    assert main(["report", *(str(root / n) for n in names), "--out", str(out), "--resamples", "300"]) == 0
    md = (out / "RESULTS.md").read_text()
    c = table(md, "Relative WER reduction against the continued-training control (%)")
    assert list(c) == ["phone", "rain", "Average", "Average (devices)", "Average (noise)"]
    assert list(c["phone"]) == ["Source-only (continued)", "ST keep 0.7", "MMD", "CMatch (ctc_align)"]
    for row, ds in (("phone", ["phone"]), ("rain", ["rain"]), ("Average", ["phone", "rain"])):
        assert c[row]["Source-only (continued)"] == "control"
        ctl = wer(ds, [hyps[f"ctl_{d}"][d] for d in ds])
        cm = wer(ds, [hyps[f"cmatch_{d}"][d] for d in ds])
        point, low, high = (
            float(x) for x in c[row]["CMatch (ctc_align)"].translate(str.maketrans("", "", "[],†")).split()
        )
        assert point == pytest.approx(round(100 * (ctl - cm) / ctl, 1), abs=0.051) and low <= point <= high
    assert c["phone"]["CMatch (ctc_align)"].endswith("†")  # 30 % -> 10 % word errors
    assert c["rain"]["MMD"] == "–" and c["Average"]["ST keep 0.7"] == "–"  # no run for that cell
    ctl, st = wer(["rain"], [hyps["ctl_rain"]["rain"]]), wer(["rain"], [hyps["st_rain"]["rain"]])
    assert float(c["rain"]["ST keep 0.7"].split()[0]) == pytest.approx(
        round(100 * (ctl - st) / ctl, 1), abs=0.051
    )


def test_the_control_is_never_the_best_method(exp_tree: tuple[Path, dict], tmp_path: Path) -> None:
    """A continued-training control better than every method: "against the best method" still
    measures from the best adaptation method, and the control's cell says it is ahead (negative)."""
    root, hyps = exp_tree
    hyps["ctl"] = system(root, "ctl", "{method: source_only, target: phone}", {"phone": 0.02, "rain": 0.02})
    out = tmp_path / "report"
    names = ["source", "ctl", "cmatch_phone", "cmatch_rain", "mmd_phone"]
    assert main(["report", *(str(root / n) for n in names), "--out", str(out), "--resamples", "300"]) == 0
    md = (out / "RESULTS.md").read_text()
    w = table(md, "Unsupervised adaptation: WER (%) on the target domains")
    assert w["phone"]["Source-only (continued)"].startswith("**")  # the best system of the row
    vs = table(md, "Against the best method (WER points)")
    for row, ds in (("phone", ["phone"]), ("Average", ["phone", "rain"])):
        assert vs[row]["CMatch (ctc_align)"] == "best"
        ctl = wer(ds, [hyps["ctl"][d] for d in ds])
        cm = wer(ds, [hyps[f"cmatch_{d}"][d] for d in ds])
        cell = vs[row]["Source-only (continued)"]
        point, low, high = (float(x) for x in cell.translate(str.maketrans("", "", "[],†")).split())
        assert ctl < cm and point == pytest.approx(ctl - cm, abs=0.006) and low <= point <= high
    assert float(vs["phone"]["MMD"].split()[0]) > 0
    assert "never the best method" in md


def test_one_control_run_serves_every_domain_it_was_decoded_on(
    exp_tree: tuple[Path, dict], tmp_path: Path
) -> None:
    """The control reads no target audio: a run of it adapted "to phone" and decoded on rain's test set
    too is rain's control as well; a run adapted to rain with the same seed takes precedence."""
    root, hyps = exp_tree
    for name, seed, target in (("ctl_s1", 1, "phone"), ("ctl_s2", 2, "phone"), ("ctl_rain", 1, "rain")):
        errs = {"rain": 0.25, "clean": 0.2} | ({"phone": 0.3} if target == "phone" else {})
        hyps[name] = system(root, name, f"{{method: source_only, target: {target}}}", errs)
        with (root / name / "config.yaml").open("a") as f:
            f.write(f"train: {{seed: {seed}}}\n")
    out = tmp_path / "report"
    names = ["source", "ctl_s1", "ctl_s2", "cmatch_phone", "cmatch_rain"]
    assert main(["report", *(str(root / n) for n in names), "--out", str(out), "--resamples", "100"]) == 0
    md = (out / "RESULTS.md").read_text()
    w = table(md, "Unsupervised adaptation: WER (%) on the target domains")
    for d in ("phone", "rain"):
        mean = (wer([d], [hyps["ctl_s1"][d]]) + wer([d], [hyps["ctl_s2"][d]])) / 2
        assert w[d]["Source-only (continued)"].strip("*") == f"{mean:.2f}"
    c = table(md, "Relative WER reduction against the continued-training control (%)")
    assert c["rain"]["CMatch (ctc_align)"] != "–" and c["Average"]["CMatch (ctc_align)"] != "–"
    assert (
        table(md, "Forgetting: source-domain test WER (%)")["Source-only (continued)"]["experiments"]
        == "2 of 2"
    )
    # a run adapted to rain itself, seed 1: rain's cell takes it in place of the phone run of seed 1
    out2 = tmp_path / "report2"
    assert main(["report", *(str(root / n) for n in [*names, "ctl_rain"]), "--out", str(out2),
                 "--resamples", "100"]) == 0  # fmt: skip
    w2 = table((out2 / "RESULTS.md").read_text(), "Unsupervised adaptation: WER (%) on the target domains")
    mean = (wer(["rain"], [hyps["ctl_rain"]["rain"]]) + wer(["rain"], [hyps["ctl_s2"]["rain"]])) / 2
    assert w2["rain"]["Source-only (continued)"].strip("*") == f"{mean:.2f}"


def test_source_model_named_even_when_adapted(
    exp_tree: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, hyps = exp_tree
    # a control (source terms only) that CMatch then adapts from: the baseline has an adapt section
    system(root, "ctl", "{method: source_only, target: phone}", {"phone": 0.3, "laptop": 0.3, "clean": 0.2})
    ctl = {d: read_hyp(root / "ctl", d) for d in ("phone", "laptop", "clean")}
    out = tmp_path / "report"
    names = ["source", "ctl", "cmatch_phone", "cmatch_laptop"]
    args = ["report", *(str(root / n) for n in names), "--out", str(out), "--resamples", "100"]
    assert main([*args, "--source-model", str(root / "ctl")]) == 0
    md = (out / "RESULTS.md").read_text()
    w = table(md, "Unsupervised adaptation: WER (%) on the target domains")
    assert list(w) == ["laptop", "phone", "Average"]
    assert list(w["phone"]) == ["Source-only", "CMatch (ctc_align)"]  # the control is the baseline, no column
    for d in ("phone", "laptop"):
        assert w[d]["Source-only"] == f"{wer([d], [ctl[d]]):.2f}"
    f = table(md, "Forgetting: source-domain test WER (%)")
    assert f["CMatch (ctc_align)"]["clean WER source model"] == f"{wer(['clean'], [ctl['clean']]):.2f}"
    r = table(md, "Regime of the target domains")
    assert (
        list(r) == ["laptop", "phone"]
        and r["phone"]["Source-only WER"] == f"{wer(['phone'], [ctl['phone']]):.2f}"
    )
    # without it, the first system not adapted is the source, and the control one of the methods
    assert main([*args[:5], "--out", str(tmp_path / "r2"), "--resamples", "100"]) == 0
    w2 = table(
        (tmp_path / "r2" / "RESULTS.md").read_text(), "Unsupervised adaptation: WER (%) on the target domains"
    )
    assert w2["phone"]["Source-only"] == f"{wer(['phone'], [hyps['source']['phone']]):.2f}"
    assert "Source-only (continued)" in w2["phone"]
    assert main([*args, "--source-model", str(tmp_path / "elsewhere")]) == 2
    assert (
        f"--source-model {tmp_path / 'elsewhere'}: not one of the experiments given"
        in capsys.readouterr().err
    )


def test_libri_adapt_devices_custom_noise_list_and_source_domain(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    for name, adapt, errs in (
        ("src", None, {"matrix": 0.3, "respeaker": 0.4, "usb": 0.45}),
        ("cm_r", "{method: cmatch, target: respeaker, cmatch: {labels: ctc_pred}}", {"respeaker": 0.2}),
        ("cm_u", "{method: cmatch, target: usb, cmatch: {labels: ctc_pred}}", {"usb": 0.2, "matrix": 0.3}),
    ):
        system(root, name, adapt, errs)
    out = tmp_path / "r"
    args = ["report", str(root / "src"), str(root / "cm_r"), str(root / "cm_u"), "--out", str(out)]
    assert main([*args, "--source-domain", "matrix", "--noise-domains", "none", "--resamples", "100"]) == 0
    md = (out / "RESULTS.md").read_text()
    w = table(md, "Unsupervised adaptation: WER (%) on the target domains")
    assert list(w) == ["respeaker", "usb", "Average"]  # all devices: no split rows
    f = table(md, "Forgetting: source-domain test WER (%)")
    assert f["CMatch (ctc_pred)"]["experiments"] == "1 of 2"
    assert (
        f["CMatch (ctc_pred)"]["matrix WER source model"]
        == f"{wer(['matrix'], [read_hyp(root / 'src', 'matrix')]):.2f}"
    )


def pseudo_labels(
    root: Path, domain: str, p_err: float, keep: int, name: str | None = None, utt2domain: bool = True
) -> tuple[Path, dict[str, str]]:
    """A target data dir (``name``, default ``en_train_<domain>``) with its true transcripts and, as
    `asr-transfer pseudo-label` writes it, a pseudo-label dir of it keeping ``keep`` labels (one left
    empty); returns it and all labels. Without ``utt2domain``: a plain Kaldi dir, and its labels."""
    truth = refs(domain)
    common = {"wav": {u: f"/a/{u}.flac" for u in truth}, "utt2spk": {u: u.split("-")[0] for u in truth}}
    name = name or f"en_train_{domain}"
    data = root / "data" / name
    write_data_dir(
        data, text=truth, utt2domain=dict.fromkeys(truth, domain) if utt2domain else None, **common
    )
    rng = random.Random(domain)
    hyp_all = {u: " ".join(w for w in t.split() if rng.random() > p_err) for u, t in truth.items()}
    hyp_all[min(truth)] = ""
    kept = sorted(u for u in truth if hyp_all[u])[:keep]
    out = root / "pseudo" / name
    write_data_dir(
        out,
        wav={u: common["wav"][u] for u in kept},
        text={u: hyp_all[u] for u in kept},
        utt2spk={u: common["utt2spk"][u] for u in kept},
        utt2domain=dict.fromkeys(kept, domain) if utt2domain else None,
    )
    write_table(out / "hyp_all", hyp_all)
    (out / "pseudo_label.yaml").write_text(yaml.safe_dump({"data": str(data), "keep": 0.7}))
    return out, hyp_all


def test_regime_table_ratio_to_clean_and_pseudo_label_wer(
    exp_tree: tuple[Path, dict], tmp_path: Path
) -> None:
    root, hyps = exp_tree
    phone, phone_all = pseudo_labels(tmp_path, "phone", 0.2, keep=17)
    rain, _ = pseudo_labels(tmp_path, "rain", 0.5, keep=17)
    out = tmp_path / "report"
    args = [str(root / "source"), str(root / "cmatch_phone"), str(root / "cmatch_wind")]
    assert main(["report", *args, "--out", str(out), "--resamples", "50",
                 "--pseudo-labels", str(phone), str(rain)]) == 0  # fmt: skip
    r = table((out / "RESULTS.md").read_text(), "Regime of the target domains")
    # rows: the adapted targets and the pseudo-labelled domains, devices first
    assert list(r) == ["phone", "rain", "wind"]
    clean = wer(["clean"], [hyps["source"]["clean"]])
    for d in ("phone", "rain", "wind"):
        src = wer([d], [hyps["source"][d]])
        assert r[d]["Source-only WER"] == f"{src:.2f}" and r[d]["ratio to clean WER"] == f"{src / clean:.2f}"
    assert r["wind"]["pseudo-labels kept"] == "–" and r["wind"]["pseudo-label WER, kept"] == "–"
    # pseudo-label WER against the true transcripts, by jiwer: all 24 (the empty one is all deletions)
    truth = refs("phone")
    kept = sorted(u for u in truth if phone_all[u])[:17]
    assert r["phone"]["pseudo-labels kept"] == "17 of 24"
    assert (
        r["phone"]["pseudo-label WER, kept"]
        == f"{100 * jiwer.wer([truth[u] for u in kept], [phone_all[u] for u in kept]):.2f}"
    )
    ids = sorted(truth)
    assert (
        r["phone"]["pseudo-label WER, all"]
        == f"{100 * jiwer.wer([truth[u] for u in ids], [phone_all[u] for u in ids]):.2f}"
    )
    assert float(r["rain"]["pseudo-label WER, kept"]) > float(r["phone"]["pseudo-label WER, kept"])


def test_regime_table_without_adapted_systems_and_its_errors(
    exp_tree: tuple[Path, dict], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = exp_tree
    phone, _ = pseudo_labels(tmp_path, "phone", 0.2, keep=17)
    # the recipe labels corpus/data/... relative to its own dir, where it runs the report too
    (phone / "pseudo_label.yaml").write_text(yaml.safe_dump({"data": "data/en_train_phone", "keep": 0.7}))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r"
    # the source model alone: the regime of the pseudo-labelled domains, no adaptation tables
    assert main(["report", str(root / "source"), "--out", str(out), "--pseudo-labels", str(phone)]) == 0
    md = (out / "RESULTS.md").read_text()
    assert "Unsupervised adaptation" not in md and list(table(md, "Regime of the target domains")) == [
        "phone"
    ]
    assert main(["report", str(root / "source"), "--out", str(out), "--pseudo-labels", str(tmp_path)]) == 2
    assert "not a pseudo-label dir (no pseudo_label.yaml)" in capsys.readouterr().err


def plain_system(root: Path, name: str, adapt: str | None, decodes: dict[str, tuple[str, float, bool]]):
    """An experiment whose decodes are of plain dirs: ``{dataset: (domain, p_err, has utt2domain)}``."""
    exp = root / name
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(f"adapt: {adapt or '{method: supervised}'}\n")
    return {ds: decode(exp, d, p, dataset=ds, utt2domain=has) for ds, (d, p, has) in decodes.items()}


@pytest.mark.parametrize("clean_has_utt2domain", [True, False])
def test_plain_dirs_take_the_domain_from_the_adapted_experiment(
    tmp_path: Path, capsys, clean_has_utt2domain: bool
) -> None:
    # the target's dirs hold wav.scp, text, utt2spk only; its name says nothing about the domain
    root, c = tmp_path / "exp", clean_has_utt2domain
    src = plain_system(
        root, "source", None, {"en_test_clean": ("clean", 0.4, c), "shop_test": ("phone", 0.5, False)}
    )
    mmd = plain_system(root, "mmd", "{method: mmd, target: kiosk}",
                       {"en_test_clean": ("clean", 0.45, c), "shop_test": ("phone", 0.3, False)})  # fmt: skip
    out = tmp_path / "r"
    assert (
        main(["report", str(root / "source"), str(root / "mmd"), "--out", str(out), "--resamples", "50"]) == 0
    )
    md = (out / "RESULTS.md").read_text()
    w = table(md, "Unsupervised adaptation: WER (%) on the target domains")
    assert w["kiosk"]["Source-only"].strip("*") == f"{wer(['phone'], [src['shop_test']]):.2f}"
    assert w["kiosk"]["MMD"].strip("*") == f"{wer(['phone'], [mmd['shop_test']]):.2f}"
    f = table(md, "Forgetting: source-domain test WER (%)")
    assert f["MMD"]["clean WER after adaptation (mean)"] == f"{wer(['clean'], [mmd['en_test_clean']]):.2f}"
    assert "No test decode" not in md
    # pseudo-labels of a plain dir: the domain its name says, else an error naming the file to add
    named, _ = pseudo_labels(tmp_path, "phone", 0.2, keep=17, name="en_train_kiosk", utt2domain=False)
    args = ["report", str(root / "source"), str(root / "mmd"), "--out", str(out), "--resamples", "50"]
    assert main([*args, "--pseudo-labels", str(named)]) == 0
    regime = table((out / "RESULTS.md").read_text(), "Regime of the target domains")
    assert list(regime) == ["kiosk"] and regime["kiosk"]["pseudo-labels kept"] == "17 of 24"
    unnamed, _ = pseudo_labels(tmp_path, "phone", 0.2, keep=17, name="shop_train", utt2domain=False)
    capsys.readouterr()
    assert main([*args, "--pseudo-labels", str(unnamed)]) == 2
    err = capsys.readouterr().err
    assert f"add utt2domain to {tmp_path / 'data' / 'shop_train'}" in err and err.count("\n") == 1
    # two unplaceable test decodes: the note names the file that would place them
    decode(root / "mmd", "phone", 0.3, dataset="mall_test", utt2domain=False)
    assert (
        main(["report", str(root / "source"), str(root / "mmd"), "--out", str(out), "--resamples", "50"]) == 0
    )
    md = (out / "RESULTS.md").read_text()
    assert "No test decode of the target domain for: MMD → kiosk (" in md
    assert "2 test decodes without utt2domain (mall_test, shop_test)" in md
    assert "add utt2domain to data/mall_test or data/shop_test" in md
    # the source model did not decode the dir the adapted experiment was tested on: which one to decode
    shutil.rmtree(root / "mmd" / "decode_mall_test")
    shutil.rmtree(root / "source" / "decode_shop_test")
    assert main(args) == 0
    md = (out / "RESULTS.md").read_text()
    note = f"Source-only → kiosk ({root / 'source'}: no test decode of domain 'kiosk': decode data/shop_test"
    assert note in md


def read_hyp(exp: Path, domain: str) -> dict[str, str]:
    lines = (exp / f"decode_en_test_{domain}" / "text").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines)


def test_no_adapted_system_no_section_and_clear_errors(
    exp_tree: tuple[Path, dict], tmp_path: Path, capsys
) -> None:
    root, _ = exp_tree
    out = tmp_path / "r"
    assert main(["report", str(root / "source"), "--out", str(out), "--resamples", "50"]) == 0
    assert "Unsupervised adaptation" not in (out / "RESULTS.md").read_text()
    # a source-side run of the new-language methods names no target domain, and is no adaptation
    system(root, "src_adapters", "{method: source_adapters}", {"clean": 0.3})
    args = ["report", str(root / "source"), str(root / "src_adapters"), "--resamples", "50"]
    assert main([*args, "--out", str(out)]) == 0
    assert "Unsupervised adaptation" not in (out / "RESULTS.md").read_text()
    # two experiments of one method for one target
    shutil.copytree(root / "cmatch_rain", root / "cmatch_rain2")
    args = [
        "report",
        str(root / "source"),
        str(root / "cmatch_rain"),
        str(root / "cmatch_rain2"),
        "--out",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cmatch_rain2 are both 'CMatch (ctc_align)' adapted to 'rain'" in err
    # adapted systems only: no source model
    assert main(["report", str(root / "cmatch_rain"), "--out", str(out), "--resamples", "50"]) == 2
    assert "no source model" in capsys.readouterr().err
    (root / "mmd_rain" / "config.yaml").write_text("adapt: {method: mmd, target: null}\n")
    assert main(["report", str(root / "source"), str(root / "mmd_rain"), "--out", str(out)]) == 2
    assert f"{root / 'mmd_rain' / 'config.yaml'}: 'adapt' needs a 'target' domain" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium")


@pytest.mark.slow
@pytest.mark.system_tool
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_adaptation_tables_render_in_headless_chromium(exp_tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, hyps = exp_tree
    out = tmp_path / "report"
    assert main(["report", str(root / "source"), *(str(root / n) for n in hyps if n != "source"),
                 "--out", str(out), "--resamples", "100"]) == 0  # fmt: skip
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120, text=True,
    ).stdout  # fmt: skip
    # the browser parsed the tables: the adaptation headings and the bold best cell survive in its DOM
    assert "Relative WER reduction against source-only (%)</h2>" in dom
    assert dom.count("<table>") >= 4 and "<td><b>" in dom


def test_an_interval_holds_the_spread_between_training_seeds(tmp_path: Path) -> None:
    """One seed no better than the source model, the other perfect: the mean halves the WER, but the
    interval must not claim a gain with confidence, since a rerun could be the first seed again."""
    root = tmp_path / "exp"
    system(root, "source", None, {"rain": 0.4, "clean": 0.2})
    for name, seed in (("mmd_s1", 1), ("mmd_s2", 2)):
        system(root, name, "{method: mmd, target: rain}", {"clean": 0.2})
        with (root / name / "config.yaml").open("a") as f:
            f.write(f"train: {{seed: {seed}}}\n")
    # seed 1 decodes as the source model does, seed 2 without an error
    shutil.copytree(root / "source" / "decode_en_test_rain", root / "mmd_s1" / "decode_en_test_rain")
    perfect = root / "mmd_s2" / "decode_en_test_rain"
    shutil.copytree(root / "source" / "decode_en_test_rain", perfect)
    shutil.copy(perfect / "ref", perfect / "text")
    out = tmp_path / "r"
    names = ["source", "mmd_s1", "mmd_s2"]
    assert main(["report", *(str(root / n) for n in names), "--out", str(out), "--resamples", "400"]) == 0
    md = (out / "RESULTS.md").read_text()
    cell = table(md, "Relative WER reduction against source-only (%)")["rain"]["MMD"]
    value, low, high = (float(x) for x in re.findall(r"[-+]?\d+\.\d+", cell))
    assert value == pytest.approx(50.0, abs=0.05)
    # a quarter of the resamples draw seed 1 twice (no gain): the interval reaches 0 and is not marked
    assert low == pytest.approx(0.0, abs=0.05) and high == pytest.approx(100.0, abs=0.05)
    assert "†" not in cell
    assert "its intervals resample the seeds as well as the utterances" in md


def test_runs_with_other_training_seeds_are_pooled(tmp_path: Path, capsys) -> None:
    """Two seeds of one method and target: the cell is their mean WER, the interval pools them."""
    root = tmp_path / "exp"
    hyps = {"source": system(root, "source", None, {"rain": 0.4, "clean": 0.2})}
    for name, seed, p in (("mmd_s1", 1, 0.3), ("mmd_s2", 2, 0.1), ("cm", 1, 0.25)):
        method = "cmatch, labels: ctc_pred" if name == "cm" else "mmd"
        hyps[name] = system(root, name, f"{{method: {method}, target: rain}}", {"rain": p, "clean": 0.2})
        with (root / name / "config.yaml").open("a") as f:
            f.write(f"train: {{seed: {seed}}}\n")
    out = tmp_path / "r"
    names = ["source", "mmd_s1", "mmd_s2", "cm"]
    assert main(["report", *(str(root / n) for n in names), "--out", str(out), "--resamples", "300"]) == 0
    md = (out / "RESULTS.md").read_text()
    w = table(md, "Unsupervised adaptation: WER (%) on the target domains")
    seeds = [wer(["rain"], [hyps[n]["rain"]]) for n in ("mmd_s1", "mmd_s2")]  # the same utterances
    assert w["rain"]["MMD"].strip("*") == f"{sum(seeds) / 2:.2f}"
    assert "MMD: 2 training seeds per target domain (train.seed 1, 2)" in md
    src = wer(["rain"], [hyps["source"]["rain"]])
    red = table(md, "Relative WER reduction against source-only (%)")
    mean = sum(seeds) / 2
    assert float(red["rain"]["MMD"].split()[0]) == pytest.approx(100 * (src - mean) / src, abs=0.051)
    # a method with one seed against one with two: the difference of their (mean) WERs
    vs = table(md, "Against the best method (WER points)")
    cm = wer(["rain"], [hyps["cm"]["rain"]])
    best, other = ("MMD", "CMatch (ctc_pred)") if sum(seeds) / 2 < cm else ("CMatch (ctc_pred)", "MMD")
    assert vs["rain"][best] == "best"
    assert float(vs["rain"][other].split()[0]) == pytest.approx(abs(cm - sum(seeds) / 2), abs=0.006)
    forgetting = table(md, "Forgetting: source-domain test WER (%)")
    assert forgetting["MMD"]["experiments"] == "2 of 2"
    # the same seed twice is no pooling: an error naming both runs
    shutil.copytree(root / "mmd_s1", root / "mmd_s1_again")
    again = [str(root / n) for n in ("source", "mmd_s1", "mmd_s1_again")]
    assert main(["report", *again, "--out", str(out)]) == 2
    assert "are both 'MMD' adapted to 'rain' with train.seed 1" in capsys.readouterr().err
