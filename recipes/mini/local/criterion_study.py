"""Judge the tuning grid's selection rules against the target dev audio's transcripts (a study, not a run).

``local/tune_adapt.sh`` chooses each method's grid point without target transcripts. This script says
how good such a choice is: it decodes every finished grid run (and the source model) on the target
dev audio of its domain, scores it against that audio's *transcripts*, and prints, per method, the
point each rule would choose and the WER it has there, beside the best point. No adaptation run or
choice reads its output; it exists so the rule can be judged once, in the open (docs/benchmarks.md).

Rules compared (lower is better for each):
  loss      the run's best dev loss (``train.log``), within the forgetting guard as
            ``local/tune_adapt.sh --select loss`` applies it (``--max_forget``)
  wer       the source dev split's WER (the grid's forgetting-guard decode): ``--select wer``
  entropy   mean CTC posterior entropy per frame on the target dev audio (no labels)
  dropout   WER between two decodes of the target dev audio with dropout on (no labels)

With ``--test`` it reads instead the test decodes of the points the loss and the wer rule choose
(``asr-transfer decode --exp RUN --data corpus/data/en_test_D`` first, for both rules' points on each
grid domain D; scored as stage 9 scores them) and prints each method's paired difference between
the two: the check of a rule on data it was not chosen on.

Usage (in recipes/mini, after local/tune_adapt.sh):
  python local/criterion_study.py exp/tune [exp/tune_more ...] [--exp exp/tiny_clean] [--dump dump]
                                  [--data corpus/data] [--split heldout] [--test]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import kaldiio
import numpy as np
import torch
from scipy.stats import spearmanr

from asr_transfer.data.kaldi import read_table
from asr_transfer.decode.greedy import ctc_greedy
from asr_transfer.decode.transcribe import Recognizer
from asr_transfer.score import bootstrap
from asr_transfer.score.api import ScoreOptions, load_or_score
from asr_transfer.score.scoring import score_texts

RUN = re.compile(r"(?P<domain>[a-z]+)_lr(?P<lr>[^_]+)_w(?P<w>[^_]+)$")


def wer(ref: dict[str, str], hyp: dict[str, str]) -> float:
    """Corpus WER (%) of ``hyp`` against ``ref``, scored as ``asr-transfer score`` does."""
    return score_texts(ref, hyp).total.words.rate


def decode(rec: Recognizer, feats: list[tuple[str, torch.Tensor]], dropout: int | None = None):
    """CTC greedy hypotheses and the mean per-frame posterior entropy; ``dropout``: the seed of a
    decode with the dropout layers on (the rest in eval mode)."""
    model, tok = rec.model.eval(), next(iter(rec.tokenizers.values()))
    if dropout is not None:
        torch.manual_seed(dropout)
        for mod in model.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.train()
    hyps, ent, frames = {}, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(feats), 32):
            chunk = feats[i : i + 32]
            x = torch.nn.utils.rnn.pad_sequence([f for _, f in chunk], batch_first=True)
            enc, lens, _ = model.encode(x, torch.tensor([len(f) for _, f in chunk]), exact_lengths=True)
            logp = model.ctc_log_probs(enc, tok.lang)
            for (utt, _), ids in zip(chunk, ctc_greedy(logp, lens)):
                hyps[utt] = tok.decode(ids)
            valid = torch.arange(logp.size(1))[None, :] < lens[:, None]
            ent += float((-(logp.exp() * logp).sum(-1) * valid).sum())
            frames += int(lens.sum())
    model.eval()
    return hyps, ent / frames


def measure(exp: Path, feats: list[tuple[str, torch.Tensor]], ref: dict[str, str]) -> dict[str, float]:
    """The target dev WER against the transcripts and the two label-free quantities of one model."""
    rec = Recognizer.from_exp(exp)
    hyps, entropy = decode(rec, feats)
    a, b = (decode(rec, feats, dropout=seed)[0] for seed in (1, 2))
    return {"target_dev_wer": wer(ref, hyps), "entropy": entropy, "dropout": wer(a, b)}


def best_loss(run: Path) -> float:
    """The lowest dev loss of a run's epochs."""
    return min(float(v) for v in re.findall(r"dev loss ([0-9.]+)", (run / "train.log").read_text()))


def source_wer(run: Path, split: str) -> float:
    """The source dev split's WER (%) that local/tune_adapt.sh scored for the run."""
    return float(json.loads((run / f"decode_en_{split}_clean/score/wer.json").read_text())["total"]["wer"])


def utterance_errors(runs: dict[str, Path]) -> dict[str, tuple[int, int]]:
    """``domain/utt -> (word errors, reference words)`` of a point's test decodes (``runs``: domain ->
    run), scored as stage 9 scores them (cached in each decode's ``score/``)."""
    out = {}
    for d, run in runs.items():
        result, _ = load_or_score(run / f"decode_en_test_{d}", ScoreOptions())
        out |= {f"{d}/{u.utt}": (u.words.errors, u.words.ref_len) for u in result.utts}
    return out


def paired(a: dict, b: dict) -> tuple[float, float, float]:
    """WER of ``a`` minus ``b`` (points) and its 95 % paired-bootstrap interval over utterances."""
    keys = sorted(a)
    diff = bootstrap.compare(np.array([b[k][0] for k in keys]), np.array([a[k][0] for k in keys]),
                             np.array([a[k][1] for k in keys])).diff  # fmt: skip
    return diff.value, diff.low, diff.high


def compare_on_test(chosen: dict[str, dict[str, list[dict]]]) -> None:
    """Each method's test WER at the loss's and the wer rule's points, and the paired difference; then
    pooled over the methods where they differ (each utterance's errors summed over those methods)."""
    print("\nTest sets of the grid's domains: the rules' points (wer minus loss, points, 95 % interval)\n")
    print("| method | wer's point | loss's point | wer minus loss |\n|---|---|---|---|")
    pool: dict[str, dict[str, tuple[int, int]]] = {"wer": {}, "loss": {}}
    for method, by_rule in sorted(chosen.items()):
        errs = {r: utterance_errors({x["domain"]: x["run"] for x in pt}) for r, pt in by_rule.items()}
        names = {r: f"lr {pt[0]['lr']}, w {pt[0]['w']}" for r, pt in by_rule.items()}
        if by_rule["wer"] == by_rule["loss"]:
            print(f"| {method} | {names['wer']} | the same | - |")
            continue
        d, lo, hi = paired(errs["wer"], errs["loss"])
        print(f"| {method} | {names['wer']} | {names['loss']} | {d:+.2f} [{lo:+.2f}, {hi:+.2f}] |")
        for r in pool:
            for utt, (e, w) in errs[r].items():
                pe, pw = pool[r].get(utt, (0, 0))
                pool[r][utt] = (pe + e, pw + w)
    if pool["wer"]:
        d, lo, hi = paired(pool["wer"], pool["loss"])
        print(f"| pooled where they differ | | | {d:+.2f} [{lo:+.2f}, {hi:+.2f}] |")


def mean(rows: list[dict], q: str) -> float:
    """The mean of ``q`` over a grid point's runs (one per domain)."""
    return statistics.mean(r[q] for r in rows)


def grid_points(rows: list[dict], domains: list[str]) -> dict[str, dict[tuple[str, str], list[dict]]]:
    """``method -> (lr, weight) -> its runs``, the points with a run on every domain."""
    out: dict[str, dict[tuple[str, str], list[dict]]] = {}
    for r in rows:
        out.setdefault(r["method"], {}).setdefault((r["lr"], r["w"]), []).append(r)
    return {m: {k: v for k, v in pts.items() if len(v) == len(domains)} for m, pts in sorted(out.items())}


def choose(points: dict[tuple[str, str], list[dict]], rule: str, limit: float) -> tuple[str, str]:
    """The point a rule chooses: the lowest mean; the loss as local/tune_adapt.sh applies it, within the
    forgetting guard (source WER at most ``limit``) unless every point is over it."""
    if rule == "loss":
        within = [k for k in points if mean(points[k], "wer") <= limit]
        if within:
            return min(within, key=lambda k: mean(points[k], "loss"))
        rule = "wer"
    return min(points, key=lambda k: mean(points[k], rule))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tune", nargs="+", type=Path, help="local/tune_adapt.sh output folders")
    ap.add_argument("--exp", type=Path, default=Path("exp/tiny_clean"))
    ap.add_argument("--dump", type=Path, default=Path("dump"))
    ap.add_argument("--data", type=Path, default=Path("corpus/data"))
    ap.add_argument("--split", default="heldout", help="the dev split of the adaptation (heldout or dev)")
    ap.add_argument("--max_forget", type=float, default=1.0, help="the grid's forgetting guard (WER points)")
    ap.add_argument("--test", action="store_true", help="compare the rules' points on the domains' test sets")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = [(m.name, run) for t in args.tune for m in sorted(t.iterdir()) if m.is_dir()
            for run in sorted(m.iterdir())
            if RUN.match(run.name) and (run / "model.pt").is_file()]  # fmt: skip
    domains = sorted({RUN.match(r.name)["domain"] for _, r in runs})
    limit = source_wer(args.exp, args.split) + args.max_forget
    rows = []
    for method, run in runs:
        m = RUN.match(run.name)
        rows.append({"method": method, "lr": m["lr"], "w": m["w"], "domain": m["domain"], "run": run,
                     "loss": best_loss(run), "wer": source_wer(run, args.split)})  # fmt: skip
    if args.test:
        chosen = {m: {rule: pts[choose(pts, rule, limit)] for rule in ("wer", "loss")}
                  for m, pts in grid_points(rows, domains).items()}  # fmt: skip
        compare_on_test(chosen)
        return
    data = {}
    for d in domains:
        scp = read_table(args.dump / f"pseudo/en_{args.split}_{d}/feats.scp")
        feats = sorted(((u, torch.from_numpy(kaldiio.load_mat(p).copy())) for u, p in scp.items()),
                       key=lambda x: len(x[1]))  # fmt: skip
        data[d] = (feats, read_table(args.data / f"en_{args.split}_{d}/text"))
    source = {d: measure(args.exp, *data[d]) for d in domains}
    for r in rows:
        r |= measure(r["run"], *data[r["domain"]])
        print(json.dumps({k: v for k, v in r.items() if k != "run"}), flush=True)
    rules = ("loss", "wer", "entropy", "dropout")
    print("\nSource model, target dev WER: "
          + ", ".join(f"{d} {source[d]['target_dev_wer']:.2f}" for d in domains))  # fmt: skip
    print("\nSpearman correlation with the target dev WER over the grid's runs, per domain:\n")
    print("| rule | " + " | ".join(domains) + " |\n|---|" + "---|" * len(domains))
    for rule in rules:
        cells = []
        for d in domains:
            rs = [r for r in rows if r["domain"] == d]
            cells.append(f"{spearmanr([r[rule] for r in rs], [r['target_dev_wer'] for r in rs])[0]:.2f}")
        print(f"| {rule} | " + " | ".join(cells) + " |")
    print("\nThe point each rule chooses (mean over the domains) and its mean target dev WER:\n")
    print("| method | best point | " + " | ".join(rules) + " |\n|---|---|" + "---|" * len(rules))
    for method, points in grid_points(rows, domains).items():

        def cell(key: tuple[str, str], pts: dict = points) -> str:
            return f"{mean(pts[key], 'target_dev_wer'):.2f} (lr {key[0]}, w {key[1]})"

        best = min(points, key=lambda k, pts=points: mean(pts[k], "target_dev_wer"))
        print(
            f"| {method} | {cell(best)} | " + " | ".join(cell(choose(points, q, limit)) for q in rules) + " |"
        )


if __name__ == "__main__":
    main()
