"""``source_adapters``: one adapter per source language on the frozen multilingual body.

Stage 1 of SimAdapter (Hou et al., IEEE/ACM TASLP 2021). The run is an ordinary ``asr-transfer train`` on
the source languages' data, started from the multilingual model (``train.init``): every batch
holds one language, whose adapter alone is enabled for it, so each language updates only its own
adapter and head (the others get no gradient; Adam leaves parameters without one untouched).
The adapters are named by their languages and persisted in ``model.adapters``; SimAdapter
copies them from this experiment (:func:`~asr_transfer.model.adapters.import_adapters`).
See docs/methods.md, section 3.6.

With ``train_body: true`` the body trains too (language-adaptive pretraining, as X-MOD's modular
pretraining of Pfeiffer et al., NAACL 2022): run from scratch, it makes the multilingual base itself,
with every language's batches passing through that language's adapter from the first step, so the
body learns what the languages share and each adapter what is its language's own. On a body trained
first and frozen after, the adapters stop near the identity (the body already fits these very
languages), so SimAdapter's fusion cannot tell them apart and MetaAdapter's tasks teach nothing.
Such a base is its own ``adapt.sources`` experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from asr_transfer.adapt.base import Context, Method, Options, forward, supervised_terms, unwrap
from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import HybridASR
from asr_transfer.text.tokenizer import Tokenizer


@dataclass
class SourceAdapterOptions(Options):
    """The ``adapt:`` section of ``source_adapters``.

    Attributes:
        langs: the source languages (default: every head of the model).
        bottleneck: adapter bottleneck (the paper: 128 for source languages at d_model 256).
        where: the stacks whose slots get the adapters.
        train_body: train the body with the adapters (language-adaptive pretraining) instead of
            freezing it.
    """

    langs: list[str] = field(default_factory=list)
    bottleneck: int = 128
    where: list[str] = field(default_factory=lambda: ["encoder", "decoder"])
    train_body: bool = False


class SourceAdapters(Method):
    """Train one adapter (and the head) per source language, the body frozen (or with ``train_body``, too).

    Example:
        >>> SourceAdapters({"langs": ["de", "fr"], "bottleneck": 8}).opts.langs
        ['de', 'fr']
    """

    name = "source_adapters"
    OptionsClass = SourceAdapterOptions
    kind = "source"
    find_unused_parameters = True

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        super().setup(model, tokenizers)
        langs = self.opts.langs or sorted(model.heads)
        unknown = [lang for lang in langs if lang not in model.heads]
        if unknown:
            raise ValueError(f"adapt.langs: no head for {unknown} in the model ({sorted(model.heads)})")
        self.opts.langs = list(langs)
        if not self.opts.train_body:
            model.freeze()
        for lang in langs:
            model.add_adapter(lang, bottleneck=int(self.opts.bottleneck), where=tuple(self.opts.where),
                              enabled=False)  # fmt: skip
            model.unfreeze_head(lang)
            model.unfreeze_adapters([lang])

    def compute_objectives(
        self, model: torch.nn.Module, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        batch = batches["source"]
        if batch.lang not in self.opts.langs:
            raise ValueError(f"a {batch.lang} batch: adapt.langs has no adapter for it ({self.opts.langs})")
        unwrap(model).set_enabled([batch.lang])
        return supervised_terms(forward(model, batch))
