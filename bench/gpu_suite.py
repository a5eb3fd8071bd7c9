"""The GPU suite's driver: machine, imports, data, GPU tests, training, profile, decoding, part by part.

Started by ``bench/gpu_suite.sh`` (which installs the wheels and sets ``PYTHONPATH``); usable alone in an
environment that has everything:

    python bench/gpu_suite.py [--device cuda|cpu] [--out DIR] [--work DIR] [--time-limit S]
                              [--parts machine,imports,data,gpu_tests,train,profile,decode]
                              [--budgets 40000,80000]
                              [--corpus SYNTH_CORPUS]

Each part is a subprocess with its own time limit, cut further so that the parts after it keep a
minimum share of ``--time-limit``; a part that fails or runs out of time is recorded with the tail
of its log, and the next part runs. After every part ``OUT/gpu_suite.json`` (all figures, per-part
status, seconds, command and error, machine info) and ``OUT/gpu_suite.md`` are rewritten, so a run
cut short still leaves what it measured; at the end the logs go to ``OUT/gpu_suite_logs.tar.gz``.

The benchmarks are the project's own scripts, called with the flags their ``--help`` lists:
``bench/train_throughput.py`` (ours vs ESPnet's trainer over the same fbank, one run per padded-frames
budget), ``bench/train_profile.py`` (our old vs new training-step path at the first budget: each
path's data, forward, backward and optimiser seconds per step and their shares) and
``bench/decode_speed.py`` (ours batched beam and CTC greedy vs ESPnet ``Speech2Text``).
Their figures are read from the JSON each writes with ``--json`` (kept whole in the part's
``script_json``; a script without ``--json`` fails its part). ``GPU_SUITE_FAIL=part[,part]``
replaces those parts' commands by one that fails, to check that a failure is logged and the rest
still runs.

The driver imports only the standard library, so it reports even when torch or ESPnet are broken.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
STATUSES = ("ok", "failed", "timeout", "skipped")
PHASES = ("data", "forward", "backward", "optim")  # of a training step, as bench/train_profile.py times them

#: flags of the benchmark scripts that the suite passes when their ``--help`` lists them
FLAG_DEVICE, FLAG_JSON, FLAG_BUDGET, FLAG_AMP = "--device", "--json", "--max-batch-frames", "--espnet-amp"
FLAG_WORKERS, FLAG_SYSTEMS, FLAG_BATCH = "--num-workers", "--systems", "--batch-size"


@dataclass(frozen=True)
class Sizes:
    """Sizes and limits (seconds) of one device's run; ``reserve``: least time a part is worth starting in."""

    preset: str
    model: str  # conf/model/<...>: ref = transformer_ref.yaml (27 M), tiny = tiny.yaml
    budgets: tuple[int, ...]
    steps: int
    warmup: int
    train_utts: int
    profile_steps: int  # timed steps per path of bench/train_profile.py (on CUDA each runs twice)
    profile_warmup: int
    decode_train_epochs: int
    decode_train_utts: int
    decode_utts: int
    decode_repeats: int
    beam: int
    decode_systems: str  # ours, for decode_speed.py --systems (ESPnet Speech2Text always runs)
    decode_batch: int  # utterances per batch of our beam search
    loader_workers: int | None  # data-loader workers of both trainers (None: the script's default)
    limits: dict[str, int] = field(default_factory=dict)
    reserve: dict[str, int] = field(default_factory=dict)


SIZES = {
    "cuda": Sizes(
        preset="mini", model="ref", budgets=(40000, 80000), steps=8, warmup=3, train_utts=1000,
        profile_steps=6, profile_warmup=2,
        decode_train_epochs=2, decode_train_utts=300, decode_utts=20, decode_repeats=1, beam=10,
        decode_systems="beam,beam1,ctc_greedy", decode_batch=32, loader_workers=4,
        # reserves sum to 385 s: with a set-up of up to 20 s, >= 45 s of the 450 s default to spare
        limits={"machine": 30, "imports": 90, "data": 120, "gpu_tests": 150, "train": 120, "profile": 75,
                "decode": 210},
        reserve={"machine": 10, "imports": 20, "data": 20, "gpu_tests": 40, "train": 45, "profile": 35,
                 "decode": 80},
    ),
    "cpu": Sizes(  # a smoke run: every part, smallest sizes (a couple of minutes on 2 busy cores)
        preset="tiny", model="tiny", budgets=(2000, 4000), steps=1, warmup=1, train_utts=6,
        profile_steps=1, profile_warmup=0,  # one step per path: the smoke run stays short
        decode_train_epochs=1, decode_train_utts=6, decode_utts=1, decode_repeats=1, beam=2,
        decode_systems="beam,ctc_greedy", decode_batch=16, loader_workers=None,
        limits={"machine": 60, "imports": 120, "data": 120, "gpu_tests": 120, "train": 240, "profile": 150,
                "decode": 300},
        reserve={"machine": 10, "imports": 20, "data": 20, "gpu_tests": 20, "train": 40, "profile": 20,
                 "decode": 60},
    ),
}  # fmt: skip


# ---------------------------------------------------------------------------------------- running
@dataclass
class Outcome:
    status: str
    seconds: float
    output: str = ""
    error: str | None = None


def run_command(cmd: list[str], log: Path, limit: float, env: dict[str, str] | None = None) -> Outcome:
    """Run ``cmd`` with its output in ``log``; kill its whole process group after ``limit`` seconds.

    >>> import tempfile; log = Path(tempfile.mkdtemp()) / "x.log"
    >>> run_command([sys.executable, "-c", "print('hi')"], log, 30).status
    'ok'
    >>> o = run_command([sys.executable, "-c", "import time; time.sleep(30)"], log, 0.5)
    >>> o.status, o.error
    ('timeout', 'no result within its limit of 0.5 s')
    """
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=max(limit, 0.1))
        except subprocess.TimeoutExpired:
            rc = None
            _kill_group(proc)
    seconds = time.perf_counter() - start
    output = log.read_text(errors="replace")
    if rc is None:
        return Outcome("timeout", seconds, output, f"no result within its limit of {limit:g} s")
    if rc:
        return Outcome("failed", seconds, output, f"rc {rc}: " + _tail(output))
    return Outcome("ok", seconds, output)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it 5 s later (benchmarks start their own subprocesses)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def script_flags(script: Path) -> set[str]:
    """The ``--long`` options a script's ``--help`` lists (empty if the help itself fails).

    >>> {"--config", "--steps", "--corpus"} <= script_flags(REPO / "bench" / "train_throughput.py")
    True
    """
    try:
        out = subprocess.run(
            [PY, str(script), "--help"], capture_output=True, text=True, cwd=REPO, timeout=30
        ).stdout
    except subprocess.TimeoutExpired:
        return set()
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out))


# ---------------------------------------------------------------------------------------- parsing
def train_systems(report: dict) -> dict[str, dict[str, float]]:
    """Systems of ``bench/train_throughput.py --json``: every figure of its table, per system.

    >>> r = {"systems": {"ours": {"params": 27123456, "utts_per_step": 101.0, "audio_s_per_step": 364.2,
    ...      "s_per_step": 0.18, "audio_s_per_s": 2020.0, "ours_over_this": 1.0}}}
    >>> train_systems(r)["ours"]["audio_s_per_s"], train_systems(r)["ours"]["params"]
    (2020.0, 27123456.0)
    """
    return {name: {k: float(v) for k, v in row.items()} for name, row in report["systems"].items()}


def decode_systems(report: dict) -> dict[str, dict[str, float]]:
    """Systems of ``bench/decode_speed.py --json``, by name, with the utterance count of the run.

    >>> r = {"utts": 20, "systems": [{"name": "ours beam (batch 16)", "seconds": 0.5, "rtf": 0.0113,
    ...      "x_espnet": 30.0, "cpu_seconds": 0.95, "x_espnet_cpu": 28.1, "same_hyps_as_espnet": 18}]}
    >>> row = decode_systems(r)["ours beam (batch 16)"]
    >>> row["seconds"], row["cpu_seconds"], row["same_as_espnet"], row["utts"]
    (0.5, 0.95, 18.0, 20.0)
    """
    rename = {"same_hyps_as_espnet": "same_as_espnet"}
    return {
        row["name"]: {rename.get(k, k): float(v) for k, v in row.items() if k != "name"}
        | {"utts": float(report["utts"])}
        for row in report["systems"]
    }


def profile_paths(report: dict) -> tuple[dict[str, dict[str, float]], float | None]:
    """Paths (``old``, ``new``) of ``bench/train_profile.py --json``, and new / old throughput.

    Per path: each phase's median seconds per step and its share of the phases' sum, s/step, audio s/s.

    >>> old = {"data": 0.02, "forward": 0.4, "backward": 0.5, "optim": 0.08, "step": 1, "audio_s_per_s": 38}
    >>> new = {"data": 0, "forward": 0.4, "backward": 0.45, "optim": .05, "step": 0.9, "audio_s_per_s": 42.2}
    >>> r = {"speedup_new_over_old": 1.11, "paths": {"old": old, "new": new}}
    >>> paths, speedup = profile_paths(r)
    >>> paths["old"]["backward"], paths["old"]["backward_share"], paths["new"]["audio_s_per_s"], speedup
    (0.5, 0.5, 42.2, 1.11)
    """
    paths = {}
    for name, med in report["paths"].items():
        row = {p: float(med[p]) for p in PHASES}
        row |= {"s_per_step": float(med["step"]), "audio_s_per_s": float(med["audio_s_per_s"])}
        total = sum(row[p] for p in PHASES)
        paths[name] = row | {f"{p}_share": row[p] / total if total else 0.0 for p in PHASES}
    speedup = report.get("speedup_new_over_old")
    return paths, float(speedup) if speedup is not None else None


def parse_junit(path: Path) -> dict[str, int]:
    """Counts of a pytest ``--junitxml`` report: tests, passed, failed, errors, skipped."""
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {
        "tests": n["tests"],
        "passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
        "failed": n["failures"],
        "errors": n["errors"],
        "skipped": n["skipped"],
    }


# ---------------------------------------------------------------------------------------- suite
class Suite:
    """Runs the parts in order, each under its limit, and rewrites the JSON and markdown after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = SIZES[args.device]
        self.work, self.out = args.work.resolve(), args.out.resolve()
        self.logs = self.work / "logs"
        self.start = time.perf_counter()
        self.deadline = self.start + args.time_limit
        self.forced = {p for p in os.environ.get("GPU_SUITE_FAIL", "").split(",") if p}
        budgets = args.budgets or self.sizes.budgets
        self.budgets = [int(b) for b in budgets]
        # per device: the two modes' corpora and the benchmarks' caches differ
        self.scratch = self.work / args.device
        self.corpus = args.corpus.resolve() if args.corpus else self.scratch / f"corpus_{self.sizes.preset}"
        self.threads = (os.cpu_count() or 1) if args.device == "cuda" else 2
        self.result: dict = {
            "suite": "bench/gpu_suite.sh",
            "device": args.device,
            "started": _now(),
            "time_limit_s": args.time_limit + args.setup_seconds,
            "command": args.suite_command or shlex.join(sys.argv),
            "sizes": {k: v for k, v in vars(self.sizes).items() if k not in ("limits", "reserve")}
            | {"budgets": self.budgets},
            "machine": {},
            "parts": {},
        }
        self.result["parts"]["setup"] = {
            "status": args.setup,
            "seconds": float(args.setup_seconds),
            "error": args.setup_error or None,
            "log": str(self.logs / "setup.log"),
            "figures": {"wheels_installed": _count_dist_infos(self.work / "site")},
        }
        if args.setup == "failed":
            log = self.logs / "setup.log"
            tail = _tail(log.read_text(errors="replace")) if log.exists() else ""
            self.result["parts"]["setup"]["error"] = f"{args.setup_error}\n{tail}".strip()
        elif not self.result["parts"]["setup"]["figures"]["wheels_installed"]:
            self.result["parts"]["setup"]["note"] = "no wheels installed: the interpreter's own packages"

    # the order of the parts is the order of the JSON and the table
    def plan(self) -> list[tuple[str, str]]:
        """(part name, kind) in order; kind keys the limits: ``train_b40000`` is a ``train`` part.

        Each budget has two training parts: ours vs ESPnet fp32 (``train_b<budget>``) and ours vs ESPnet
        with ``--use_amp`` (``train_b<budget>_amp``): the script runs one ESPnet variant at a time.
        """
        parts = [("machine", "machine"), ("imports", "imports"), ("data", "data"), ("gpu_tests", "gpu_tests")]
        parts += [(f"train_b{b}{amp}", "train") for b in self.budgets for amp in ("", "_amp")]
        parts += [("profile", "profile"), ("decode", "decode")]
        wanted = set(self.args.parts.split(",")) if self.args.parts else None
        return [(n, k) for n, k in parts if wanted is None or n in wanted or k in wanted]

    def run(self) -> int:
        plan = self.plan()
        for i, (name, kind) in enumerate(plan):
            later = sum(self.sizes.reserve[k] for _, k in plan[i + 1 :])
            left = self.deadline - time.perf_counter()
            limit = min(self.sizes.limits[kind], left - later)
            if limit < self.sizes.reserve[kind]:
                part = {
                    "status": "skipped",
                    "seconds": 0.0,
                    "error": f"no time left ({left:.0f} s of the run)",
                }
            else:
                print(f"gpu_suite: {name} (limit {limit:.0f} s)", flush=True)
                part = self.run_part(name, kind, limit)
            part.setdefault("limit_s", round(max(limit, 0), 1))
            self.result["parts"][name] = part
            print(f"gpu_suite: {name}: {part['status']} in {part['seconds']:.1f} s", flush=True)
            if part.get("error"):
                print(_indent(part["error"]), flush=True)
            self.write()
        self.result["finished"] = _now()
        self.result["seconds"] = round(time.perf_counter() - self.start + self.args.setup_seconds, 1)
        self.write()
        self.pack_logs()
        print((self.out / "gpu_suite.md").read_text())
        return 0

    def run_part(self, name: str, kind: str, limit: float) -> dict:
        """One part; an error of the suite's own (say, output it cannot read) fails this part only."""
        start = time.perf_counter()
        try:
            return getattr(self, f"part_{kind}")(name, limit)
        except Exception as e:  # any error must leave the other parts running
            error = f"the suite itself failed on this part: {type(e).__name__}: {e}"
            return {"status": "failed", "seconds": round(time.perf_counter() - start, 1), "error": error}

    def command(self, name: str, cmd: list[str], limit: float) -> tuple[dict, Outcome]:
        """Run one part's command (or the forced failure) and return its JSON entry."""
        if name in self.forced:
            cmd = [PY, "-c", f"raise SystemExit('forced failure: GPU_SUITE_FAIL names {name}')"]
        log = self.logs / f"{name}.log"
        outcome = run_command(cmd, log, limit)
        part = {
            "status": outcome.status,
            "seconds": round(outcome.seconds, 1),
            "command": shlex.join(cmd),
            "log": str(log),
            "error": outcome.error,
        }
        return part, outcome

    # ------------------------------------------------------------------------------------ parts
    def part_machine(self, name: str, limit: float) -> dict:
        part, outcome = self.command(name, [PY, "-c", _MACHINE_PROBE], limit)
        if outcome.status == "ok":
            info = json.loads(outcome.output.strip().splitlines()[-1])
            info["repo_commit"] = _git_commit()
            self.result["machine"] = info
            part["figures"] = info
            if self.args.device == "cuda" and not info.get("cuda"):
                part.update(status="failed", error="--device cuda, but torch sees no CUDA device")
        return part

    def part_imports(self, name: str, limit: float) -> dict:
        part, outcome = self.command(name, [PY, "-c", _IMPORT_PROBE], limit)
        last = outcome.output.strip().splitlines()[-1:] or [""]
        if last[0].startswith("{"):
            part["figures"] = json.loads(last[0])
        return part

    def part_data(self, name: str, limit: float) -> dict:
        if self.args.corpus or (self.corpus / "corpus.json").exists():
            cmd = [PY, "-c", "print('corpus ready')"]  # given, or made by an earlier run with this --work
        else:
            jobs = str(min(os.cpu_count() or 1, 16))
            cmd = [PY, "-m", "asr_transfer.cli", "synth", "--preset", self.sizes.preset, "--out"]
            cmd += [str(self.corpus), "--jobs", jobs]
        part, outcome = self.command(name, cmd, limit)
        if outcome.status == "ok":
            part["figures"] = {"corpus": str(self.corpus), "preset": self.sizes.preset} | {
                f"{split}_utts": _lines(self.corpus / "data" / split / "wav.scp")
                for split in ("en_train_clean", "en_dev_clean", "en_test_clean")
            }
        return part

    def part_gpu_tests(self, name: str, limit: float) -> dict:
        junit = self.logs / "gpu_tests.xml"
        junit.unlink(missing_ok=True)
        cmd = [PY, "-m", "pytest", "tests/test_gpu.py", "-q", "-rs", "-p", "no:cacheprovider", "--junitxml"]
        part, outcome = self.command(name, cmd + [str(junit)], limit)
        if junit.exists():
            part["figures"] = parse_junit(junit)
            no_run = part["figures"]["tests"] == part["figures"]["skipped"]
            if outcome.status == "ok" and no_run and self.args.device == "cuda":
                part.update(status="failed", error="every GPU test skipped: pytest sees no CUDA device")
            elif no_run:
                part["note"] = "every GPU test skipped: no CUDA device"
        return part

    def part_train(self, name: str, limit: float) -> dict:
        amp = name.endswith("_amp")
        budget = int(name.removeprefix("train_b").removesuffix("_amp"))
        script = REPO / "bench" / "train_throughput.py"
        flags = script_flags(script)
        if amp and self.args.device == "cpu":
            return _not_run("skipped", "ESPnet --use_amp needs CUDA")
        if amp and FLAG_AMP not in flags:
            return _not_run("skipped", f"{script.name} has no {FLAG_AMP}")
        z, notes = self.sizes, []
        cmd = [PY, str(script), "--config", z.model, "--steps", str(z.steps), "--warmup", str(z.warmup)]
        cmd += ["--threads", str(self.threads), "--corpus", str(self.corpus), "--utts", str(z.train_utts)]
        cmd += ["--espnet-input", "fbank", "--work", str(self.scratch / "train")]
        cmd += [FLAG_AMP] if amp else []
        if FLAG_BUDGET in flags:
            cmd += [FLAG_BUDGET, str(budget)]
        elif budget == self.budgets[0] and not amp:
            budget = _yaml_int(REPO / "conf/train/mini.yaml", "max_batch_frames")
            notes.append(f"{script.name} has no {FLAG_BUDGET}: measured at its default budget, {budget}")
        else:
            return _not_run("skipped", f"{script.name} has no {FLAG_BUDGET}: one budget only (its default)")
        if FLAG_WORKERS in flags and z.loader_workers is not None:
            cmd += [FLAG_WORKERS, str(z.loader_workers)]
        problem = self._device_flag(cmd, flags, script) or self._json_flag(cmd, flags, script, name)
        if problem:
            return _not_run("failed", problem)
        part, outcome = self.command(name, cmd, limit)
        report = self._script_json(name)
        systems = train_systems(report) if report else {}
        return self._finish(part, outcome, systems, report, notes, budget_frames=budget, espnet_amp=amp)

    def part_profile(self, name: str, limit: float) -> dict:
        """Old vs new step path at the first budget, in the training parts' folder (their dump is reused)."""
        script = REPO / "bench" / "train_profile.py"
        flags = script_flags(script)
        z, budget = self.sizes, self.budgets[0]
        fig = dict(model=z.model, budget_frames=budget, steps=z.profile_steps, warmup=z.profile_warmup)
        cmd = [PY, str(script), "--config", z.model, "--steps", str(z.profile_steps)]
        cmd += ["--warmup", str(z.profile_warmup), "--threads", str(self.threads)]
        cmd += ["--corpus", str(self.corpus), "--utts", str(z.train_utts)]
        cmd += ["--work", str(self.scratch / "train"), FLAG_BUDGET, str(budget)]
        if z.loader_workers is not None:
            cmd += [FLAG_WORKERS, str(z.loader_workers)]
        problem = self._device_flag(cmd, flags, script) or self._json_flag(cmd, flags, script, name)
        if problem:
            return _not_run("failed", problem)
        part, outcome = self.command(name, cmd, limit)
        report = self._script_json(name)
        paths, speedup = profile_paths(report) if report else ({}, None)
        return self._finish(part, outcome, paths, report, [], **fig, new_over_old=speedup)

    def part_decode(self, name: str, limit: float) -> dict:
        script = REPO / "bench" / "decode_speed.py"
        flags = script_flags(script)
        s = self.sizes
        cmd = [PY, str(script), "--config", s.model, "--corpus", str(self.corpus)]
        cmd += ["--work", str(self.scratch / "decode")]
        cmd += ["--utts", str(s.decode_utts), "--threads", str(self.threads), "--beam", str(s.beam)]
        cmd += ["--train-epochs", str(s.decode_train_epochs), "--train-utts", str(s.decode_train_utts)]
        cmd += ["--repeats", str(s.decode_repeats)]
        if FLAG_SYSTEMS in flags:
            cmd += [FLAG_SYSTEMS, s.decode_systems]
        if FLAG_BATCH in flags:
            cmd += [FLAG_BATCH, str(s.decode_batch)]
        problem = self._device_flag(cmd, flags, script) or self._json_flag(cmd, flags, script, name)
        if problem:
            return _not_run("failed", problem)
        part, outcome = self.command(name, cmd, limit)
        report = self._script_json(name)
        systems = decode_systems(report) if report else {}
        extra = {"utts": report["utts"], "audio_s": report["audio_seconds"]} if report else {}
        return self._finish(part, outcome, systems, report, [], model=s.model, beam=s.beam, **extra)

    # ------------------------------------------------------------------------------------ helpers
    def _device_flag(self, cmd: list[str], flags: set[str], script: Path) -> str | None:
        """Add ``--device``; the reason not to run when the script cannot be told to use the GPU."""
        if FLAG_DEVICE in flags:
            cmd += [FLAG_DEVICE, self.args.device]
        elif self.args.device != "cpu":
            return f"{script.name} has no {FLAG_DEVICE}: it would measure the CPU"
        return None

    def _json_flag(self, cmd: list[str], flags: set[str], script: Path, name: str) -> str | None:
        """Add ``--json`` (the figures are read from it); the reason not to run when the script has none."""
        if FLAG_JSON not in flags:
            return f"{script.name} has no {FLAG_JSON}: its figures cannot be read"
        raw = self.scratch / f"{name}.json"
        raw.unlink(missing_ok=True)
        cmd += [FLAG_JSON, str(raw)]
        return None

    def _script_json(self, name: str) -> dict | None:
        """What the part's script wrote with ``--json`` (``None``: nothing, e.g. it failed first)."""
        raw = self.scratch / f"{name}.json"
        return json.loads(raw.read_text()) if raw.exists() else None

    def _finish(
        self, part: dict, outcome: Outcome, systems: dict, report: dict | None, notes: list, **fig
    ) -> dict:
        figures: dict = dict(fig)
        figures["systems"] = systems
        if report is not None:
            figures["script_json"] = report
        part["figures"] = figures
        if notes:
            part["note"] = "; ".join(notes)
        if outcome.status == "ok" and not systems:
            part.update(
                status="failed", error="finished, but wrote no --json figures: " + _tail(outcome.output)
            )
        return part

    # ------------------------------------------------------------------------------------ output
    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.out / "gpu_suite.json", json.dumps(self.result, indent=1) + "\n")
        _atomic_write(self.out / "gpu_suite.md", render_markdown(self.result))

    def pack_logs(self) -> None:
        tmp = self.out / "gpu_suite_logs.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for log in sorted(self.logs.glob("*")):
                tar.add(log, arcname=f"logs/{log.name}")
        os.replace(tmp, self.out / "gpu_suite_logs.tar.gz")


def render_markdown(result: dict) -> str:
    """The suite's JSON as markdown: machine, parts, training, step-phase and decoding tables."""
    m = result.get("machine", {})
    gpu = m.get("gpu_name") or "no GPU"
    lines = [
        f"# GPU suite ({result['device']}), {result['started']}",
        "",
        f"Machine: {gpu}, {m.get('cpu_count', '?')} CPU cores, Python {m.get('python', '?')}, "
        f"torch {m.get('torch', '?')}, CUDA {m.get('cuda_version', '-')}, "
        f"commit {m.get('repo_commit', '?')}. "
        f"Total {result.get('seconds', '?')} s of a {result['time_limit_s']} s limit.",
        "",
        "| part | status | seconds | note / error |",
        "|---|---|---:|---|",
    ]
    for name, p in result["parts"].items():
        why = p.get("error") or p.get("note") or ""
        why = why.splitlines()[-1] if why else ""
        lines.append(f"| {name} | {p['status']} | {p['seconds']:.1f} | {why.replace('|', '/')} |")
    train = [(n, p) for n, p in result["parts"].items() if n.startswith("train_b") and p.get("figures")]
    if train:
        lines += [
            "",
            "Training (audio seconds per second; same utterances, same padded-frames budget):",
            "",
            "| budget (frames) | system | params | audio s/step | s/step | audio s/s | ours / this |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for _, p in train:
            f = p["figures"]
            for sys_name, r in f["systems"].items():
                label = f"{sys_name} --use_amp" if f.get("espnet_amp") and sys_name != "ours" else sys_name
                lines.append(
                    f"| {f['budget_frames']:,} | {label} | {r['params']:,.0f} "
                    f"| {r['audio_s_per_step']:.1f} | {r['s_per_step']:.3f} | {r['audio_s_per_s']:.1f} "
                    f"| {r['ours_over_this']:.2f} |"
                )
    prof = result["parts"].get("profile", {}).get("figures")
    if prof and prof.get("systems"):
        lines += [
            "",
            f"Training step phases, old loop path vs new (`bench/train_profile.py`, model {prof['model']}, "
            f"budget {prof['budget_frames']:,} frames; medians of {prof['steps']} steps after "
            f"{prof['warmup']}, seconds per step and share; on CUDA the phases are timed with a "
            f"synchronisation after each, s/step without); new / old throughput {prof['new_over_old']}:",
            "",
            "| path | data | forward | backward | optimiser | s/step | audio s/s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for path, r in prof["systems"].items():
            cells = " | ".join(f"{r[p]:.4f} ({100 * r[f'{p}_share']:.0f} %)" for p in PHASES)
            lines.append(f"| {path} | {cells} | {r['s_per_step']:.4f} | {r['audio_s_per_s']:.1f} |")
    dec = result["parts"].get("decode", {}).get("figures")
    if dec and dec.get("systems"):
        lines += [
            "",
            f"Decoding ({dec.get('utts', '?')} utterances, {dec.get('audio_s', '?')} s of audio, "
            f"model {dec['model']}, beam {dec['beam']}):",
            "",
            "| system | seconds | RTF | x ESPnet | same hyps as ESPnet | WER % |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for sys_name, r in dec["systems"].items():
            wer = f"{r['wer']:.2f}" if "wer" in r else "–"  # JSON of older runs has none
            lines.append(
                f"| {sys_name} | {r['seconds']:.2f} | {r['rtf']:.4f} | {r['x_espnet']:.1f} "
                f"| {r['same_as_espnet']:.0f}/{r['utts']:.0f} | {wer} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- probes
_MACHINE_PROBE = r"""
import json, os, platform, subprocess, torch
info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "cuda": torch.cuda.is_available(), "cuda_version": torch.version.cuda}
if info["cuda"]:
    p = torch.cuda.get_device_properties(0)
    info |= {"gpu_name": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1),
             "gpu_capability": f"{p.major}.{p.minor}", "gpu_count": torch.cuda.device_count()}
    try:
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=20).stdout.strip()
    except OSError:
        pass
print(json.dumps(info))
"""

# every module the benchmarks import, ESPnet's heavy entry points included, and their versions
_IMPORT_PROBE = r"""
import importlib, importlib.metadata as md, json, sys, time
missing, seconds = [], {}
for mod in ("torch", "torchaudio", "numpy", "sentencepiece", "soundfile", "kaldiio", "librosa", "jiwer",
            "espeakng_loader", "pyroomacoustics", "asr_transfer.cli", "espnet2.tasks.asr",
            "espnet2.bin.asr_inference", "espnet2.bin.asr_train"):
    start = time.perf_counter()
    try:
        importlib.import_module(mod)
    except Exception as e:
        missing.append(f"{mod}: {type(e).__name__}: {e}")
    seconds[mod] = round(time.perf_counter() - start, 2)
versions = {}
for dist in ("torch", "torchaudio", "numpy", "espnet", "sentencepiece", "librosa", "jiwer", "soundfile"):
    try:
        versions[dist] = md.version(dist)
    except md.PackageNotFoundError:
        versions[dist] = None
print(json.dumps({"versions": versions, "import_seconds": seconds, "missing": missing}))
sys.exit("cannot import: " + "; ".join(missing) if missing else 0)
"""


# ---------------------------------------------------------------------------------------- small helpers
def _not_run(status: str, why: str) -> dict:
    """The entry of a part that did not start."""
    return {"status": status, "seconds": 0.0, "error": why}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _lines(path: Path) -> int | None:
    return len(path.read_text().splitlines()) if path.exists() else None


def _count_dist_infos(site: Path) -> int:
    return len(list(site.glob("*.dist-info"))) if site.is_dir() else 0


def _yaml_int(path: Path, key: str) -> int:
    """``key: N`` of a flat YAML file, without a YAML library (the driver imports only the stdlib)."""
    return int(re.search(rf"^\s*{key}:\s*(\d+)", path.read_text(), re.M)[1])


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=sorted(SIZES), default="cuda", help="sizes and device of the run")
    parser.add_argument("--out", type=Path, default=REPO / "exp" / "gpu_suite", help="JSON, markdown, logs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_suite_work"), help="scratch folder")
    parser.add_argument("--time-limit", type=float, default=450, help="seconds for all parts together")
    parser.add_argument(
        "--parts", help="comma list of parts or kinds (machine,imports,data,gpu_tests,train,profile,decode)"
    )
    parser.add_argument("--budgets", type=lambda s: s.split(","), help="padded-frames budgets, comma list")
    parser.add_argument("--corpus", type=Path, help="an existing synth corpus (default: synthesise one)")
    parser.add_argument("--setup", choices=STATUSES, default="skipped", help=argparse.SUPPRESS)
    parser.add_argument("--setup-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--setup-error", default="", help=argparse.SUPPRESS)
    parser.add_argument("--suite-command", help=argparse.SUPPRESS)
    return Suite(parser.parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
