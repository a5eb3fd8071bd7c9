"""SimAdapter and SimAdapter+ (Hou et al., IEEE/ACM TASLP 2021): per-layer attention fusion of the source
languages' adapters and the target's own.

The source adapters come from a ``source_adapters`` experiment (``adapt.sources``), the target's
adapter and head from its ``adapter`` experiment (``simadapter``) or its fine-tuned MetaAdapter,
a ``metaadapter`` experiment (``simadapter+``), via ``adapt.target_adapter``; all of them on the
same frozen body. A ``fusion`` module (:class:`~asr_transfer.model.slots.Fusion`) in every slot
of the target adapter's stacks attends over them; only the fusion layers and the target head
train. Loss terms: ``ctc`` and ``att``; ``value_reg``, ``||W_v - I||^2`` summed over the layers
(weight 0.01); ``guide``, which pulls the attention towards the target's own adapter (weight 1.0;
zero when the target's adapter is not fused): by default the authors' bounded cross-entropy on
each layer's *mean* attention, summed over the layers (``guide: mean_ce``), or the per-frame
``-log alpha_target`` (``guide: frame_nll``); ``guide_decay: linear`` lowers its weight to 0 over
training. ``use_sources: false`` is the ablation: the same fusion layers over the target's adapter
alone. The attention given to each adapter is logged as the zero-weight terms
``fusion.<name>`` (mean over layers and frames); :func:`measure_fusion_weights` gives it per layer
for the report's plot. Everything (adapters, fusion spec) is persisted in ``model.adapters``.
Equations, options and why the fusion and the guide differ from the authors' code:
docs/methods.md, sections 3.6 and 3.7.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from asr_transfer.adapt.base import Context, forward, supervised_terms, unwrap
from asr_transfer.adapt.finetune import TransferMethod, TransferOptions
from asr_transfer.data.dataset import Batch, Utterance, collate, make_batches
from asr_transfer.model.adapters import import_adapters
from asr_transfer.model.asr import HybridASR
from asr_transfer.model.slots import Fusion
from asr_transfer.text.tokenizer import Tokenizer

FUSION = "fusion"


@dataclass
class SimAdapterOptions(TransferOptions):
    """The ``adapt:`` section of ``simadapter`` and ``simadapter+``.

    The fused adapters keep their sizes and the fusion sits in the target adapter's stacks
    (``bottleneck`` and ``where`` are not used).

    Attributes:
        sources: the ``source_adapters`` experiment.
        source_langs: the source adapters to fuse (default: all of that experiment's).
        target_adapter: the target's ``adapter`` (``simadapter``) or ``metaadapter``
            (``simadapter+``) experiment; its adapter and head start the target.
        fuse_target: fuse the target's own adapter too (the guide loss pulls towards it).
        with_base: also attend to the un-adapted block output.
        temperature: ``sqrt_d`` (scores / sqrt(D)) or ``learnt``.
        guide: ``mean_ce`` (the authors' form: per layer, cross-entropy of ``exp(mean attention)``
            against the target, summed over the layers; bounded, 0.64 to 2.36 per layer with six
            choices: a gentle pull on the mean) or ``frame_nll`` (``-log alpha_target`` per frame, averaged
            over frames and layers: a strong pull that collapses the attention onto the target).
        guide_decay: ``none`` (the authors') or ``linear`` (the guide weight falls to 0 over training).
        use_sources: fuse the source adapters (``false``: the ablation, fusion over the target's
            adapter alone, same trainable parameters; ``sources`` is then not needed).
    """

    sources: str | None = None
    source_langs: list[str] = field(default_factory=list)
    target_adapter: str | None = None
    fuse_target: bool = True
    with_base: bool = False
    temperature: str = "sqrt_d"
    guide: str = "mean_ce"
    guide_decay: str = "none"
    use_sources: bool = True


GUIDES = ("mean_ce", "frame_nll")


def fusion_layers(model: HybridASR) -> list[tuple[str, Fusion]]:
    """``[("enc1", layer), ..., ("dec1", layer), ...]``: the model's fusion layers by block."""
    return [(block, module) for block, module in model.slot_modules(FUSION) if isinstance(module, Fusion)]


def guide_loss(layers: list[Fusion], target: str, form: str = "mean_ce") -> torch.Tensor:
    """The guide term pulling each layer's attention towards ``target``; 0 if no layer fuses it.

    ``mean_ce`` (the authors'): per layer, the attention averaged over batch and frames, ``a``, then
    the cross-entropy of the logits ``exp(a)`` against ``target``, summed over the layers. It is
    bounded: per layer between ``log(1 + (K - 1) e^(1 - e))`` (all attention on the target; 0.64
    at ``K = 6`` choices) and 2.36 (all on one other), ``log K`` at uniform attention, so its pull
    on the mean attention is gentle and no single frame is steered.
    ``frame_nll``: ``-log alpha_target`` per frame, averaged over frames and layers.

    Example:
        >>> f = Fusion(4, ["de", "ro"]); f.last_alpha = torch.tensor([[[0.5, 0.5]]])
        >>> round(guide_loss([f], "ro", "frame_nll").item(), 4), guide_loss([f], "cs").item()
        (0.6931, 0.0)
        >>> round(guide_loss([f], "ro").item(), 4)  # exp(0.5) twice: log 2
        0.6931
        >>> f.last_alpha = torch.tensor([[[0.0, 1.0]]]); round(guide_loss([f, f], "ro").item(), 4)
        0.33
    """
    if form not in GUIDES:
        raise ValueError(f"adapt.guide {form!r}: choose from {GUIDES}")
    fused = [layer for layer in layers if target in layer.names and layer.last_alpha is not None]
    if not fused:
        return torch.zeros(())
    if form == "frame_nll":
        terms = [
            -(layer.last_alpha[..., layer.names.index(target)].clamp_min(1e-8)).log().mean()
            for layer in fused
        ]
        return torch.stack(terms).mean()
    terms = [
        torch.nn.functional.cross_entropy(
            layer.last_alpha.float().mean((0, 1)).exp().unsqueeze(0),
            torch.tensor([layer.names.index(target)], device=layer.last_alpha.device),
        )
        for layer in fused
    ]
    return torch.stack(terms).sum()


def _experiment_method(exp: Path) -> str:
    cfg = yaml.safe_load((exp / "config.yaml").read_text()) if (exp / "config.yaml").is_file() else None
    if not cfg:
        raise FileNotFoundError(f"{exp}: config.yaml missing: not a finished experiment")
    return (cfg.get("adapt") or {}).get("method", "supervised")


class SimAdapter(TransferMethod):
    """Fuse the source adapters and the target's ``adapter``; train the fusion layers and the target head."""

    name = "simadapter"
    OptionsClass = SimAdapterOptions
    default_weights = {"ctc": None, "att": None, "guide": 1.0, "value_reg": 0.01}
    #: the method of the experiment ``target_adapter`` must name
    target_method = "adapter"
    needs_sources = True
    measures_fusion = True

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        lang = self.set_up_target(model, tokenizers)
        if self.opts.guide_decay not in ("linear", "none"):
            raise ValueError(f"adapt.guide_decay {self.opts.guide_decay!r}: choose linear or none")
        if self.opts.guide not in GUIDES:
            raise ValueError(f"adapt.guide {self.opts.guide!r}: choose from {GUIDES}")
        if not self.opts.use_sources and not self.opts.fuse_target:
            raise ValueError("adapt.use_sources false and adapt.fuse_target false: nothing to fuse")
        if FUSION not in model.adapter_specs:  # a rebuilt experiment already holds everything
            self._assemble(model, lang)
        model.set_enabled([FUSION])
        model.freeze()
        model.unfreeze_head(lang)
        model.unfreeze_adapters([FUSION])

    def _assemble(self, model: HybridASR, lang: str) -> None:
        for key in ("sources", "target_adapter") if self.opts.use_sources else ("target_adapter",):
            if not getattr(self.opts, key):
                raise ValueError(f"adapt.{key}: not set ({self.name} needs it)")
        target = Path(self.opts.target_adapter)
        if _experiment_method(target) != self.target_method:
            raise ValueError(
                f"adapt.target_adapter {target}: a {_experiment_method(target)} experiment; "
                f"{self.name} fuses the target's {self.target_method} experiment"
            )
        theirs = Tokenizer.load(target / "tokenizers" / lang)
        if theirs.tokens != self.tokenizers[lang].tokens:
            raise ValueError(f"adapt.target_adapter {target}: its {lang} vocabulary is not this experiment's")
        langs = self._source_langs(lang) if self.opts.use_sources else []
        self.opts.source_langs = list(langs)
        if langs:
            import_adapters(model, self.opts.sources, {src: src for src in langs})
        import_adapters(model, target, {lang: lang}, heads={lang: lang})
        # a fusion layer needs every adapter it fuses in its slot: the stacks they all have
        where = [
            w
            for w in model.adapter_specs[lang]["where"]
            if all(w in model.adapter_specs[s]["where"] for s in langs)
        ]
        fuses = [*langs, lang] if self.opts.fuse_target else list(langs)
        model.add_adapter(FUSION, type="fusion", fuses=fuses, where=where, enabled=False,
                          temperature=self.opts.temperature, with_base=bool(self.opts.with_base))  # fmt: skip

    def _source_langs(self, lang: str) -> list[str]:
        sources = Path(self.opts.sources)
        if _experiment_method(sources) != "source_adapters":
            raise ValueError(f"adapt.sources {sources}: not a source_adapters experiment")
        specs = yaml.safe_load((sources / "config.yaml").read_text())["model"].get("adapters") or {}
        langs = self.opts.source_langs or sorted(n for n, s in specs.items() if s.get("type") == "adapter")
        if lang in langs:
            raise ValueError(f"adapt.source_langs {langs}: the target {lang} cannot also be a source")
        return list(langs)

    def weight(self, term: str, ctx: Context) -> float:
        if term.startswith("fusion."):
            return 0.0  # logged only
        w = super().weight(term, ctx)
        if term == "guide" and self.opts.guide_decay == "linear":
            w *= max(0.0, 1.0 - ctx.progress)
        return w

    def compute_objectives(
        self, model: torch.nn.Module, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        terms = supervised_terms(forward(model, batches["source"]))
        layers = [layer for _, layer in fusion_layers(unwrap(model))]
        terms["guide"] = guide_loss(layers, self.opts.lang, self.opts.guide).to(terms["ctc"].device)
        terms["value_reg"] = torch.stack([layer.value_penalty() for layer in layers]).sum()
        names = layers[0].names
        mean = torch.stack([layer.last_alpha.detach().float().mean((0, 1)) for layer in layers]).mean(0)
        terms.update({f"fusion.{n}": mean[i] for i, n in enumerate(names)})
        return terms


class SimAdapterPlus(SimAdapter):
    """SimAdapter whose target adapter is the target's fine-tuned MetaAdapter (``metaadapter`` experiment)."""

    name = "simadapter+"
    target_method = "metaadapter"


@torch.no_grad()
def measure_fusion_weights(
    model: HybridASR, utts: list[Utterance], max_batch_frames: int = 4000
) -> dict[str, dict[str, float]]:
    """Mean attention per fusion layer and fused adapter over labelled ``utts`` (teacher forcing).

    Returns ``{"enc1": {"de": 0.3, "ro": 0.7}, ...}``; the decoder layers see the reference prefix.
    """
    layers = fusion_layers(model)
    model.eval()
    for _, layer in layers:
        layer.record, layer.alpha_sum, layer.alpha_count = True, torch.zeros(layer.num_choices), 0
    device = next(model.parameters()).device
    try:
        for items in make_batches(utts, max_batch_frames, 0, 0):
            batch = collate(items).to(device)
            model(batch.feats, batch.feat_lens, batch.ys, batch.lang)
    finally:
        for _, layer in layers:
            layer.record = False
    return {
        label: {
            n: round(float(v) / max(layer.alpha_count, 1), 4) for n, v in zip(layer.names, layer.alpha_sum)
        }
        for label, layer in layers
    }
