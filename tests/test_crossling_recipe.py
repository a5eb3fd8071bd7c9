"""A shortened cross-lingual recipe run (two sources, one target, a few epochs; Full-FT, Adapter,
MetaAdapter, SimAdapter): pretrain (+ source adapters and the MetaAdapter) -> add-language -> decode
-> the paper-shaped table with the fusion-weight plot, rendered in headless Chromium. The documented
run is in docs/benchmarks.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from asr_transfer.adapt import build_method
from asr_transfer.config import load_config
from asr_transfer.synth.presets import PRESETS
from asr_transfer.train.options import TrainOptions

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def crossling_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess, list, dict]:
    """The shortened recipe, run once for the tests of this module: (recipe dir, process, args, env)."""
    recipe = tmp_path_factory.mktemp("crossling") / "crossling"
    recipe.mkdir()
    (recipe / "run.sh").write_bytes((REPO / "recipes/crossling/run.sh").read_bytes())
    (recipe / "run.sh").chmod(0o755)
    (recipe / "conf").symlink_to(REPO / "conf")
    (recipe.parent / "common").symlink_to(REPO / "recipes/common")  # the shared option parser
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    # the tiny preset (a few utterances per dir: en and de as sources, ro as target); character
    # vocabularies because 3-6 training utterances do not hold every letter of the dev sets
    args = ["--preset", "tiny", "--sources", "en de", "--targets", "ro",
            "--methods", "full adapter metaadapter simadapter", "--source_token_type", "char",
            "--pretrain_args", "--train.epochs 3 --train.num_threads 1",
            "--src_adapter_args", "--train.epochs 2 --train.num_threads 1 --adapt.bottleneck 8",
            "--meta_args", "--train.epochs 2 --train.num_threads 1 --adapt.bottleneck 8 --train.accum_grad 2",
            "--adapt_args",
            "--train.epochs 3 --train.num_threads 1 --tokenizer.kind char --adapt.bottleneck 8"]  # fmt: skip
    proc = subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return recipe, proc, args, env


@pytest.mark.slow
def test_crossling_recipe_shortened(
    crossling_run: tuple[Path, subprocess.CompletedProcess, list, dict],
) -> None:
    recipe, proc, args, env = crossling_run
    results = (recipe / "exp/report/RESULTS.md").read_text(encoding="utf-8")
    header = next(line for line in results.splitlines() if line.startswith("| target"))
    assert header.split("|")[2:6] == [" Full-FT ", " Adapter ", " MetaAdapter ", " SimAdapter "]
    for row in ("| ro |", "| average (1) |", "| trainable params (%) |", "Difference to Full-FT"):
        assert row in results, results
    # the base model's own WERs: the base that add_language.yaml names
    base = results.split("## Base model multi: test WER (%) per source language\n", 1)[1].split("\n## ", 1)[0]
    assert "| en_test_clean |" in base and "| de_test_clean |" in base
    assert (recipe / "exp/report/report.html").stat().st_size > 1000
    assert "| ro |" in proc.stdout  # the table is printed
    share = {m: yaml.safe_load((recipe / f"exp/ro_{m}/add_language.yaml").read_text())["trainable_share"]
             for m in ("full", "adapter", "metaadapter", "simadapter")}  # fmt: skip
    assert share["adapter"] == share["metaadapter"] < 0.2 < share["full"] == 1.0
    assert share["simadapter"] < share["full"]
    assert (recipe / "exp/ro_adapter/ro.adapter").is_file()
    assert (recipe / "exp/ro_metaadapter/ro.adapter").is_file()
    for run in ("src_adapters", "meta"):  # the source-side runs of stage 4
        assert (recipe / f"exp/{run}/model.pt").is_file()
    assert "SimAdapter fusion weights" in results and (recipe / "exp/report/fusion_weights.png").is_file()
    # idempotent: a rerun skips every finished step
    again = subprocess.run(["./run.sh", "--stage", "2", *args], cwd=recipe, env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("skipped") >= 6, again.stdout


@pytest.mark.slow
@pytest.mark.system_tool
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_crossling_report_renders_in_headless_chromium(
    crossling_run: tuple[Path, subprocess.CompletedProcess, list, dict], tmp_path: Path
) -> None:
    """The report, fusion-weight plot included, renders in a browser."""
    import numpy as np
    from PIL import Image

    page = crossling_run[0] / "exp/report/report.html"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, timeout=120,
                         text=True).stdout  # fmt: skip
    assert "SimAdapter fusion weights (mean attention" in dom and 'alt="fusion weights"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    # the heatmap is a large dark/coloured area: hundreds of rows with many non-white pixels
    assert ((pixels < 200).sum(axis=1) > 50).sum() > 150


@pytest.mark.parametrize(
    ("preset", "pretrain", "adapt"),
    [("mini", "xling_pretrain.yaml", "xling_adapt.yaml"),
     ("xling", "xling_pretrain_xling.yaml", "xling_adapt_150.yaml")],
)  # fmt: skip
def test_preset_selects_its_pretraining_and_adapt_configs(preset: str, pretrain: str, adapt: str) -> None:
    # stage 100: nothing runs; the trace shows what the stages would read
    proc = subprocess.run(
        ["bash", "-x", "./run.sh", "--preset", preset, "--stage", "100"],
        cwd=REPO / "recipes/crossling", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"pretrain_config=conf/train/{pretrain}" in proc.stderr
    assert f"adapt_config=conf/train/{adapt}" in proc.stderr
    for name in (pretrain, adapt):
        assert (REPO / "conf/train" / name).is_file()


@pytest.mark.parametrize("preset", ["mini", "xling", "standard"])
def test_preset_selects_its_own_sources_and_targets(preset: str) -> None:
    proc = subprocess.run(
        ["bash", "-x", "./run.sh", "--preset", preset, "--stage", "100"],
        cwd=REPO / "recipes/crossling", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    chosen = dict(re.findall(r"^\+ (sources|targets)='([a-z ]+)'$", proc.stderr, re.M))
    plans = PRESETS[preset].langs
    # English is the source language of the CMatch recipes, not of this one
    assert set(chosen["sources"].split()) == {p.lang for p in plans if p.role == "source" and p.lang != "en"}
    assert set(chosen["targets"].split()) == {p.lang for p in plans if p.role == "target"}
    assert ("br" in chosen["targets"].split()) == (preset == "standard")
    # given languages win over the preset's
    given = subprocess.run(
        ["bash", "-x", "./run.sh", "--preset", preset, "--stage", "100", "--targets", "ro"],
        cwd=REPO / "recipes/crossling", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "+ targets=ro" in given.stderr and f"+ targets='{chosen['targets']}'" not in given.stderr


def test_source_adapters_and_meta_training_stop_on_their_dev_criterion() -> None:
    for name in ("xling_source_adapters.yaml", "xling_meta.yaml"):
        cfg = load_config([REPO / "conf/train" / name])
        train = TrainOptions.from_config(cfg["train"])
        assert train.patience == 3 and train.epochs >= 20, name
        build_method(cfg["adapt"])  # every key a known option
    meta = build_method(load_config([REPO / "conf/train/xling_meta.yaml"])["adapt"]).opts
    assert (meta.inner_optim, meta.inner_betas, meta.inner_lr) == ("adam", [0.0, 0.999], 0.01)


RECORD = '#!/bin/sh\necho "$@" >> "$CALLS"\n'
# records each call's start and end; an add-language run leaves its summary, as the real one does; the
# SimAdapter of cs fails
CHAINS = """#!/bin/sh
echo "start $*" >> "$CALLS"
sleep 1
case "$*" in *"--lang cs --method simadapter "*) echo "cs broke" >&2; exit 3;; esac
exp=$(echo "$*" | sed -n 's/.*--exp \\([^ ]*\\).*/\\1/p')
[ -z "$exp" ] || { mkdir -p "$exp" && echo "lang: x" > "$exp/add_language.yaml"; }
echo "end $*" >> "$CALLS"
"""


def run_stage_6(
    tmp_path: Path, *args: str, stand_in: str = RECORD
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the crossling recipe's stage 6 (xling, target ro unless ``args`` say otherwise) with a
    stand-in asr-transfer that records its arguments: the process, and one line per call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "asr-transfer").write_text(stand_in)
    (bin_dir / "asr-transfer").chmod(0o755)
    recipe = tmp_path / "crossling"
    recipe.mkdir(exist_ok=True)
    (recipe / "run.sh").write_bytes((REPO / "recipes/crossling/run.sh").read_bytes())
    (recipe / "conf").symlink_to(REPO / "conf")
    (recipe.parent / "common").symlink_to(REPO / "recipes/common")  # the shared option parser
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(
        ["bash", "./run.sh", "--preset", "xling", "--stage", "6", "--stop_stage", "6", "--targets", "ro",
         *args],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return proc, calls


def stage_6_calls(tmp_path: Path, *args: str) -> list[str]:
    """What stage 6 asks of add-language (:func:`run_stage_6`), one line per call; it must succeed."""
    proc, calls = run_stage_6(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    return calls


def test_stage_6_adds_a_methods_own_config_after_the_shared_one(tmp_path: Path) -> None:
    full, meta = stage_6_calls(tmp_path, "--methods", "full metaadapter")
    shared, own = "--config conf/train/xling_adapt_150.yaml", "--config conf/train/xling_adapt_150/full.yaml"
    assert shared in full and own in full and full.index(shared) < full.index(own)
    assert shared in meta and "xling_adapt_150/" not in meta and "--adapt.meta exp/meta" in meta


def test_stage_6_without_a_config_leaves_add_language_to_its_defaults(tmp_path: Path) -> None:
    calls = stage_6_calls(tmp_path, "--methods", "full adapter", "--adapt_config", "none")
    assert len(calls) == 2 and not any("--config" in call for call in calls), calls
    assert all("--decode-config conf/decode/ctc_greedy.yaml" in call for call in calls)


def test_stage_6_runs_the_fusion_ablation_over_the_target_adapter_alone(tmp_path: Path) -> None:
    for run in ("ro_adapter", "ro_metaadapter"):
        (tmp_path / "crossling" / "exp" / run).mkdir(parents=True)
        (tmp_path / "crossling" / "exp" / run / "add_language.yaml").write_text("lang: ro\n")
    alone, plus_alone = stage_6_calls(tmp_path, "--methods", "simadapter_alone simadapter+_alone")
    assert "--method simadapter --exp exp/ro_simadapter_alone" in alone
    assert "--adapt.use_sources false --adapt.target_adapter exp/ro_adapter " in alone
    assert "--method simadapter+ --exp exp/ro_simadapter+_alone" in plus_alone
    assert "--adapt.use_sources false --adapt.target_adapter exp/ro_metaadapter " in plus_alone
    assert "--adapt.sources" not in alone + plus_alone


def test_stage_6_puts_a_second_base_and_its_runs_under_expdir(tmp_path: Path) -> None:
    full, meta = stage_6_calls(tmp_path, "--methods", "full metaadapter", "--expdir", "exp_small")
    assert "--base exp_small/multi" in full and "--exp exp_small/ro_full" in full
    assert "--adapt.meta exp_small/meta" in meta and "--exp exp_small/ro_metaadapter" in meta
    assert " exp/" not in full + meta


def test_the_larger_base_has_a_body_of_several_million_parameters_trained_to_its_dev_criterion() -> None:
    from asr_transfer.model.asr import build_model

    def body(name: str) -> int:  # every parameter but the five source languages' heads
        model = build_model(load_config([REPO / "conf/model" / name])["model"], dict.fromkeys("abcde", 150))
        return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("heads."))

    small, tiny = body("small.yaml"), body("tiny.yaml")
    assert 3e6 <= small <= 6e6 and small > 4 * tiny, (small, tiny)
    train = TrainOptions.from_config(load_config([REPO / "conf/train/xling_pretrain_small.yaml"])["train"])
    assert train.patience == 3 and train.epochs >= 30 and train.keep_best == 3


def test_a_language_adaptive_base_is_simadapters_sources(tmp_path: Path) -> None:
    for m in ("adapter", "metaadapter"):
        finished = tmp_path / "crossling" / "exp_la" / f"ro_{m}"
        finished.mkdir(parents=True)
        (finished / "add_language.yaml").write_text("lang: ro\n")
    sim, plus = stage_6_calls(tmp_path, "--methods", "simadapter simadapter+", "--expdir", "exp_la",
                              "--lang_adapters", "true")  # fmt: skip
    assert "--adapt.sources exp_la/multi --adapt.target_adapter exp_la/ro_adapter" in sim
    assert "--adapt.sources exp_la/multi --adapt.target_adapter exp_la/ro_metaadapter" in plus
    conf = REPO / "conf/train"
    cfg = load_config([conf / "xling_pretrain_small.yaml", conf / "xling_lang_adapters.yaml"])
    method = build_method(cfg["adapt"])  # every key a known option
    assert method.name == "source_adapters" and method.opts.train_body


def test_stage_6_trains_every_method_once_per_seed_and_fuses_the_same_seeds_adapter(tmp_path: Path) -> None:
    for run in ("ro_adapter", "ro_adapter_seed2"):  # as the seeds' Adapter runs leave them
        (tmp_path / "crossling" / "exp" / run).mkdir(parents=True)
        (tmp_path / "crossling" / "exp" / run / "add_language.yaml").write_text("lang: ro\n")
    calls = stage_6_calls(tmp_path, "--methods", "adapter simadapter", "--adapt_seeds", "1 2")
    assert len(calls) == 4, calls
    adapter1, sim1, adapter2, sim2 = calls
    assert "--exp exp/ro_adapter " in adapter1 and "--train.seed 1" in adapter1
    assert "--exp exp/ro_adapter_seed2 " in adapter2 and "--train.seed 2" in adapter2
    assert "--exp exp/ro_simadapter " in sim1 and "--adapt.target_adapter exp/ro_adapter " in sim1
    assert "--exp exp/ro_simadapter_seed2 " in sim2 and "--adapt.target_adapter exp/ro_adapter_seed2 " in sim2
    assert "--train.seed 2" in sim2


def test_a_learning_curve_point_trains_on_a_seeded_cut_of_each_target(tmp_path: Path) -> None:
    for run in ("ro_adapter_u50", "ro_adapter_u50_seed2"):
        (tmp_path / "crossling" / "exp" / run).mkdir(parents=True)
        (tmp_path / "crossling" / "exp" / run / "add_language.yaml").write_text("lang: ro\n")
    calls = stage_6_calls(
        tmp_path, "--methods", "adapter simadapter", "--adapt_seeds", "1 2", "--train_utts", "50"
    )
    cut, adapter1, sim1, adapter2, sim2 = calls
    assert cut == "subset corpus/data/ro_train_clean --utts 50 --out corpus/data/ro_train50_clean"
    assert all("--train corpus/data/ro_train50_clean " in c for c in (adapter1, sim1, adapter2, sim2))
    assert "--exp exp/ro_adapter_u50 " in adapter1 and "--exp exp/ro_simadapter_u50_seed2 " in sim2
    assert "--adapt.target_adapter exp/ro_adapter_u50_seed2 " in sim2


def test_chains_of_targets_run_two_at_a_time_each_method_after_the_one_it_fuses(tmp_path: Path) -> None:
    args = ("--targets", "ro cs", "--methods", "adapter simadapter", "--adapt_jobs", "2")
    proc, calls = run_stage_6(tmp_path, *args, stand_in=CHAINS)
    # cs's SimAdapter failed: the stage fails after the other chain finished, naming the failed chain's log
    assert proc.returncode == 1
    assert "stage 6: 1 job(s) failed, see: exp/log/add_language_cs.log" in proc.stderr
    assert "cs broke" in (tmp_path / "crossling/exp/log/add_language_cs.log").read_text()
    assert calls[0].startswith("start add-language") and calls[1].startswith("start add-language")  # overlap
    ro = [c.split("--method ")[1].split()[0] for c in calls if c.startswith("end") and "--lang ro " in c]
    assert ro == ["adapter", "simadapter"]  # in the order given: the fusion finds its adapter finished
    sim = next(c for c in calls if c.startswith("start") and "--lang ro --method simadapter " in c)
    assert "--adapt.target_adapter exp/ro_adapter " in sim
