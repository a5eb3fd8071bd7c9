"""Hybrid CTC/attention ASR over ESPnet2's encoder, decoder and CTC modules.

Data flow (shapes): feats ``(B, T, 80)`` -> CMVN -> SpecAugment (training) ->
encoder blocks, each followed by a :class:`Slot` -> ``(B, T', D)`` with
``T' ~ T/4`` -> per-language CTC and attention decoder (blocks + slots) ->
loss ``ctc_weight * CTC + (1 - ctc_weight) * attention CE``.

The blocks are ESPnet's own (``TransformerEncoder``/``ConformerEncoder``,
``TransformerDecoder``), kept under ESPnet's parameter names so an ESPnet2
checkpoint loads with a key rename of the three head layers only. We iterate
the blocks ourselves (a few lines) to give every block a slot and a tap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

from asr_transfer.data.dataset import IGNORE_ID
from asr_transfer.model import adapters as adapter_files
from asr_transfer.model.attention import use_sdpa
from asr_transfer.model.grouped_decoding import grouped_block_step, source_kv, supports_grouping
from asr_transfer.model.heads import LanguageHead
from asr_transfer.model.masks import accuracy, add_sos_eos, pad_mask
from asr_transfer.model.slots import Slot, set_trainable

#: config name -> ESPnet2 encoder class; its YAML keys are passed through unchanged
ENCODERS = {"transformer": TransformerEncoder, "conformer": ConformerEncoder}


class GlobalCMVN(torch.nn.Module):
    """``(x - mean) * istd`` with statistics stored in the model (so checkpoints are self-contained)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.istd


@dataclass
class ModelOutput:
    """What :meth:`HybridASR.forward` returns.

    ``enc_out`` is ``(B, T', D)`` (after the final LayerNorm), ``layers`` maps a
    1-based block index to that block's ``(B, T', D)`` output (after its slot),
    ``ctc_logp`` is ``(B, T', V)`` fp32 log-posteriors. Without labels the losses
    and the accuracy are ``None``.
    """

    enc_out: torch.Tensor
    enc_lens: torch.Tensor
    ctc_logp: torch.Tensor
    layers: dict[int, torch.Tensor] = field(default_factory=dict)
    loss: torch.Tensor | None = None
    loss_ctc: torch.Tensor | None = None
    loss_att: torch.Tensor | None = None
    acc: torch.Tensor | None = None


class HybridASR(torch.nn.Module):
    """CTC/attention encoder-decoder with named per-language heads and adapter slots.

    ``sdpa_attention`` (config ``model.sdpa_attention``, default on) computes ESPnet's attention
    layers with ``scaled_dot_product_attention`` (:mod:`.attention`); off gives ESPnet's own
    arithmetic. Parameters and state dicts are the same either way.

    Example:
        >>> model = build_model(
        ...     {"encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2},
        ...      "decoder": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1}},
        ...     vocab_sizes={"en": 12})
        >>> out = model(torch.randn(2, 50, 80), torch.tensor([50, 40]), torch.tensor([[3, 4], [5, -1]]), "en")
        >>> out.enc_out.shape, out.ctc_logp.shape
        (torch.Size([2, 11, 32]), torch.Size([2, 11, 12]))
    """

    def __init__(
        self,
        vocab_sizes: dict[str, int],
        input_dim: int = 80,
        encoder: dict | None = None,
        decoder: dict | None = None,
        ctc_weight: float = 0.3,
        lsm_weight: float = 0.1,
        specaug: dict | None = None,
        adapters: dict[str, dict] | None = None,
        sdpa_attention: bool = True,
    ) -> None:
        super().__init__()
        enc_cfg = {"type": "transformer", "input_layer": "conv2d", **(encoder or {})}
        enc_cls = ENCODERS[enc_cfg.pop("type")]
        self.cmvn = GlobalCMVN(input_dim)
        self.specaug = None
        if specaug is not None:
            from espnet2.asr.specaug.specaug import SpecAug

            self.specaug = SpecAug(**specaug)
        self.encoder = enc_cls(input_size=input_dim, **enc_cfg)
        d_model = self.encoder.output_size()
        # vocab_size=1 and no output layer: token embedding and output live in the language heads
        self.decoder = TransformerDecoder(
            vocab_size=1, encoder_output_size=d_model, use_output_layer=False, **(decoder or {})
        )
        self.decoder.embed[0] = torch.nn.Identity()
        # ESPnet's attention layers, computed by torch's fused kernel; parameters unchanged
        use_sdpa(self, sdpa_attention)
        self._fast_subsampling = False  # see fast_subsampling()
        self.heads = torch.nn.ModuleDict({lang: LanguageHead(v, d_model) for lang, v in vocab_sizes.items()})
        # one slot after the convolutional subsampling (``where: [frontend]``), then one per block;
        # an empty slot holds no parameters, so the state dict of a model without adapters is ESPnet's
        self.front_slots = torch.nn.ModuleList([Slot()])
        self.enc_slots = torch.nn.ModuleList(Slot() for _ in self.encoder.encoders)
        self.dec_slots = torch.nn.ModuleList(Slot() for _ in self.decoder.decoders)
        self.ctc_weight = ctc_weight
        self.lsm_weight = lsm_weight
        self.d_model = d_model
        self.adapter_specs: dict[str, dict] = {}
        # enabled adapters in their recorded order, so the rebuilt slots apply them as trained
        specs = {n: adapter_files.normalise_spec(n, s) for n, s in (adapters or {}).items()}
        for name, spec in specs.items():
            self.add_adapter(
                name, **{k: v for k, v in spec.items() if k not in ("enabled", "order")}, enabled=False
            )
        on = [n for n in specs if specs[n]["enabled"]]
        self.set_enabled(sorted(on, key=lambda n: specs[n].get("order", 0)))

    # encoder -----------------------------------------------------------------------
    def encode(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        return_layers: tuple[int, ...] = (),
        exact_lengths: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """``(B, T, 80)`` features -> ``(B, T', D)`` encoder output, ``(B,)`` lengths, tapped layers.

        ESPnet's subsampling cuts its output mask out of the padded batch's mask, which counts 1-2
        frames of padding into every utterance shorter than the batch's longest: the encoder's
        attention, the CTC posteriors and the decoder then read them, so an utterance's output
        depends on its batch. Training keeps that (ESPnet's trainer does the same). With
        ``exact_lengths`` (decoding) each utterance gets the lengths and masks it has alone
        (:meth:`subsampled_lengths`), and Conformer convolutions see zeros past its end, as alone:
        ESPnet's one-utterance result (up to float rounding), whatever the batch.
        """
        x = self.cmvn(feats)
        feat_lens = feat_lens.to(x.device)
        x = x.masked_fill(pad_mask(feat_lens, x.size(1)).unsqueeze(-1), 0.0)
        if self.specaug is not None and self.training:
            x, feat_lens = self.specaug(x, feat_lens)
        masks = ~pad_mask(feat_lens, x.size(1))[:, None, :]
        if x.size(1) < 7:
            raise ValueError(f"input of {x.size(1)} frames is too short for 4x subsampling (needs 7)")
        x, masks = self.encoder.embed(x, masks)
        # the front-end slot (adapters after the subsampling); a Conformer's embedding is (x, pos_emb)
        x = (self.front_slots[0](x[0]), x[1]) if isinstance(x, tuple) else self.front_slots[0](x)
        hooks = []
        if exact_lengths:
            masks = ~pad_mask(self.subsampled_lengths(feat_lens), masks.size(-1))[:, None, :]
            # a Conformer block's depthwise convolution reads its neighbours over the padding, which
            # it sees as zeros (its own padding) when the utterance is alone: zero the padding there
            padding = ~masks  # (B, 1, T'), True at padded frames; the convolution's input is (B, C, T')
            hooks = [
                block.conv_module.depthwise_conv.register_forward_pre_hook(
                    lambda _, args: (args[0].masked_fill(padding, 0.0),)
                )
                for block in self.encoder.encoders
                if getattr(block, "conv_module", None) is not None
            ]
        layers: dict[int, torch.Tensor] = {}
        try:
            for i, (block, slot) in enumerate(zip(self.encoder.encoders, self.enc_slots), start=1):
                x, masks = block(x, masks)
                # Conformer blocks carry (x, pos_emb); slots and taps see x only
                if isinstance(x, tuple):
                    x = (slot(x[0]), x[1])
                    if i in return_layers:
                        layers[i] = x[0]
                else:
                    x = slot(x)
                    if i in return_layers:
                        layers[i] = x
        finally:
            for hook in hooks:
                hook.remove()
        if isinstance(x, tuple):
            x = x[0]
        x = self.encoder.after_norm(x)
        return x, masks.squeeze(1).sum(1), layers

    def subsampled_lengths(self, feat_lens: torch.Tensor) -> torch.Tensor:
        """``(B,)`` input frames -> ``(B,)`` encoder frames of each utterance when alone in its batch.

        The time arithmetic of the subsampling's convolutions, which is what ESPnet's masks give for
        an unpadded utterance (its output frames are those whose inputs are all real frames).

        Example:
            >>> model = build_model({"encoder": {"output_size": 16, "attention_heads": 2, "linear_units": 32,
            ...                      "num_blocks": 1}, "decoder": {"attention_heads": 2, "linear_units": 32,
            ...                      "num_blocks": 1}}, {"en": 5})
            >>> model.subsampled_lengths(torch.tensor([7, 50, 51])).tolist()
            [1, 11, 12]
        """
        lens = feat_lens
        for conv in self.encoder.embed.modules():
            if isinstance(conv, torch.nn.Conv2d):  # (time, frequency) kernels, in the order they run
                k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
                lens = torch.div(lens + 2 * p - d * (k - 1) - 1, s, rounding_mode="floor") + 1
        return lens

    def fast_subsampling(self) -> None:
        """Speed up the input subsampling convs for inference (~45 % less CPU there on a CPU).

        Their weights go channels-last (oneDNN's fast layout; results differ by float rounding,
        ~1e-6) and their ReLUs work in place (same results, no extra ``(B, C, T/2, F/2)`` copy).
        Values, names and state dict are unchanged. Decoding calls it for every batch: only the
        first call changes anything (loading a state dict copies into the re-laid weights).
        """
        if self._fast_subsampling:
            return
        self._fast_subsampling = True
        # normal tensors even when called under inference mode (decoding): training may follow
        with torch.inference_mode(False), torch.no_grad():
            for module in self.encoder.embed.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
                elif isinstance(module, torch.nn.ReLU):
                    module.inplace = True

    def ctc_log_probs(self, enc_out: torch.Tensor, lang: str) -> torch.Tensor:
        """``(B, T', D)`` -> ``(B, T', V)`` CTC log-posteriors, computed in fp32."""
        with torch.autocast(enc_out.device.type, enabled=False):
            return self.heads[lang].ctc.log_softmax(enc_out.float())

    # decoder -----------------------------------------------------------------------
    def decode_steps(
        self,
        ys_in: torch.Tensor,
        ys_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None,
        lang: str,
        cache: list[torch.Tensor] | None = None,
        src_kv: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decoder over token prefixes ``(B, L)`` -> hidden ``(B, L, D)`` (after norm) and new cache.

        With a ``cache`` (what the previous call returned, one row per prefix on dim 0: reorder
        its rows with the prefixes) only the last position is computed.

        ``memory`` may also hold one ``(U, T, D)`` row per utterance for ``B = U * K`` prefixes
        grouped by utterance (beam search), with ``memory_mask`` ``(U, 1, T)``. In eval mode the
        self-attention keys and values are then cached and the source ones come from ``src_kv``
        (:meth:`source_kv` of ``memory``, computed once per search; :mod:`.grouped_decoding`);
        ``hidden`` holds the positions computed by this call only (the last one, with a cache).
        """
        x = self.decoder.embed(self.heads[lang].embed(ys_in))
        grouped = memory.size(0) != ys_in.size(0)
        if grouped and not self.training and all(map(supports_grouping, self.decoder.decoders)):
            if cache is not None:
                x = x[:, cache[0].size(3) :]  # the positions not decoded yet
            src_kv = src_kv if src_kv is not None else self.source_kv(memory)
            new_cache = []
            for i, (block, slot) in enumerate(zip(self.decoder.decoders, self.dec_slots)):
                x, kv = grouped_block_step(
                    block, x, ys_mask, src_kv[i], memory_mask, None if cache is None else cache[i]
                )
                x = slot(x)
                new_cache.append(kv)
            return self.decoder.after_norm(x), new_cache
        if grouped:
            group = ys_in.size(0) // memory.size(0)
            memory, memory_mask = memory.repeat_interleave(group, 0), memory_mask.repeat_interleave(group, 0)
        new_cache = []
        for i, (block, slot) in enumerate(zip(self.decoder.decoders, self.dec_slots)):
            c = None if cache is None else cache[i]
            x, ys_mask, memory, memory_mask = block(x, ys_mask, memory, memory_mask, cache=c)
            x = slot(x)
            new_cache.append(x)
        return self.decoder.after_norm(x), new_cache

    def source_kv(self, memory: torch.Tensor) -> list[torch.Tensor]:
        """Each decoder block's source-attention keys and values ``(U, 2, H, T, d_k)`` of ``(U, T, D)``."""
        return [source_kv(block.src_attn, memory) for block in self.decoder.decoders]

    def attention_logits(
        self,
        enc_out: torch.Tensor,
        enc_lens: torch.Tensor,
        ys_in: torch.Tensor,
        ys_in_lens: torch.Tensor,
        lang: str,
    ) -> torch.Tensor:
        """Teacher-forced decoder: ``(B, L)`` inputs -> ``(B, L, V)`` logits."""
        tgt_mask = ~pad_mask(ys_in_lens, ys_in.size(1))[:, None, :]
        tgt_mask = tgt_mask & subsequent_mask(tgt_mask.size(-1), device=ys_in.device).unsqueeze(0)
        mem_mask = ~pad_mask(enc_lens, enc_out.size(1))[:, None, :]
        hidden, _ = self.decode_steps(ys_in, tgt_mask, enc_out, mem_mask, lang)
        return self.heads[lang].output(hidden)

    # training forward ----------------------------------------------------------------
    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        ys: torch.Tensor | None,
        lang: str,
        return_layers: tuple[int, ...] = (),
    ) -> ModelOutput:
        """Losses for a batch. ``ys``: ``(B, L)`` token ids padded with ``-1``.

        ``ys=None`` (unlabelled audio) runs the encoder and CTC layer only: encoder output,
        tapped layers and CTC posteriors, no losses.
        """
        enc_out, enc_lens, layers = self.encode(feats, feat_lens, return_layers)
        ctc_logp = self.ctc_log_probs(enc_out, lang)
        if ys is None:
            return ModelOutput(enc_out, enc_lens, ctc_logp, layers)
        head = self.heads[lang]
        ys_lens = (ys != IGNORE_ID).sum(1)
        # CTC and the cross-entropy run in fp32 even under bf16 autocast: both are sums of many logs
        with torch.autocast(enc_out.device.type, enabled=False):
            loss_ctc = torch.nn.functional.ctc_loss(
                ctc_logp.transpose(0, 1),
                ys.clamp_min(0),
                enc_lens,
                ys_lens,
                blank=0,
                reduction="sum",
                zero_infinity=True,
            ) / ys.size(0)
        eos = head.vocab_size - 1
        ys_in, ys_out = add_sos_eos(ys, ys_lens, eos, eos, IGNORE_ID)
        logits = self.attention_logits(enc_out, enc_lens, ys_in, ys_lens + 1, lang)
        with torch.autocast(enc_out.device.type, enabled=False):
            criterion = LabelSmoothingLoss(
                head.vocab_size, IGNORE_ID, self.lsm_weight, normalize_length=False
            )
            loss_att = criterion(logits.float(), ys_out)
        acc = accuracy(logits.detach(), ys_out, IGNORE_ID)
        loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        return ModelOutput(enc_out, enc_lens, ctc_logp, layers, loss, loss_ctc, loss_att, acc)

    # adapters and freezing -----------------------------------------------------------
    def add_slot_modules(
        self,
        name: str,
        make: Callable[[int], torch.nn.Module],
        where: tuple[str, ...] = ("encoder", "decoder"),
        enable: bool = True,
    ) -> None:
        """Add ``make(d_model)`` under ``name`` to every slot of the chosen stacks."""
        stacks = {"frontend": self.front_slots, "encoder": self.enc_slots, "decoder": self.dec_slots}
        for stack in where:
            for slot in stacks[stack]:
                slot.modules_by_name[name] = make(self.d_model)
                if enable:
                    slot.enabled.append(name)

    def all_slots(self) -> list[Slot]:
        """Every slot in the order the input meets them: the front end's, the encoder's, the decoder's."""
        return [*self.front_slots, *self.enc_slots, *self.dec_slots]

    def set_enabled(self, names: list[str]) -> None:
        """Enable exactly ``names`` (in that order) in every slot that has them."""
        for slot in self.all_slots():
            slot.enabled = [n for n in names if n in slot.modules_by_name]

    def slot_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """The parameters of the modules called ``name``: a small adapter checkpoint."""
        return {k: v for k, v in self.state_dict().items() if f".modules_by_name.{name}." in k}

    # named adapters (NeMo-like API) ------------------------------------------------------
    def add_adapter(
        self,
        name: str,
        type: str = "adapter",
        bottleneck: int = 64,
        where: tuple[str, ...] | list[str] = ("encoder", "decoder"),
        enabled: bool = True,
        **options: Any,
    ) -> None:
        """Add the adapter set ``name`` (one module per slot); re-adding the same spec is a no-op.

        ``options`` are those of other module types (a ``fusion`` layer's ``fuses``...).

        Example:
            >>> m = build_model({"encoder": {"output_size": 16, "attention_heads": 2, "linear_units": 32,
            ...                  "num_blocks": 2}, "decoder": {"attention_heads": 2, "linear_units": 32,
            ...                  "num_blocks": 1}}, {"en": 5})
            >>> m.add_adapter("ro", bottleneck=4)
            >>> m.adapter_config()["ro"]["bottleneck"], m.enabled_adapters()
            (4, ['ro'])
            >>> sum(p.numel() for p in m.adapter_parameters("ro"))  # 3 slots x (LayerNorm + down + up)
            480
        """
        if type == "adapter":
            options["bottleneck"] = bottleneck
        spec = adapter_files.normalise_spec(name, {"type": type, **options, "where": where})
        del spec["enabled"]
        if name in self.adapter_specs:
            if self.adapter_specs[name] != spec:
                raise ValueError(f"adapter {name!r} exists as {self.adapter_specs[name]}, not {spec}")
        else:
            options = {k: spec[k] for k in adapter_files.TYPE_OPTIONS[type]}
            make = adapter_files.ADAPTER_TYPES[spec["type"]]
            device = next(self.parameters()).device
            self.add_slot_modules(name, lambda d: make(d, **options).to(device), tuple(spec["where"]), False)
            self.adapter_specs[name] = spec
        if enabled and name not in self.enabled_adapters():
            self.set_enabled([*self.enabled_adapters(), name])

    def remove_adapter(self, name: str) -> None:
        """Drop the adapter set ``name`` from every slot."""
        for slot in self.all_slots():
            if name in slot.modules_by_name:
                del slot.modules_by_name[name]
            slot.enabled = [n for n in slot.enabled if n != name]
        self.adapter_specs.pop(name, None)

    def enabled_adapters(self) -> list[str]:
        """Names enabled in some slot, in the order the slots apply them."""
        out: list[str] = []
        for slot in self.all_slots():
            out += [n for n in slot.enabled if n not in out]
        return out

    def enable_adapter(self, name: str, enabled: bool = True) -> None:
        """Switch one adapter set on (applied after those already on) or off."""
        if name not in self.adapter_specs:
            raise KeyError(f"no adapter {name!r}; the model has {sorted(self.adapter_specs)}")
        names = [n for n in self.enabled_adapters() if n != name]
        self.set_enabled([*names, name] if enabled else names)

    def slot_modules(self, name: str) -> list[tuple[str, torch.nn.Module]]:
        """``[("front1", module), ("enc1", module), ..., ("dec1", module), ...]``: the module ``name`` of each
        slot having one (``front1``: after the subsampling)."""
        out = []
        for prefix, slots in (("front", self.front_slots), ("enc", self.enc_slots), ("dec", self.dec_slots)):
            for i, slot in enumerate(slots, start=1):
                if name in slot.modules_by_name:
                    out.append((f"{prefix}{i}", slot.modules_by_name[name]))
        return out

    def named_adapter_parameters(self, name: str) -> list[tuple[str, torch.nn.Parameter]]:
        """``(name, parameter)`` of the adapter set ``name`` in every slot (as ``named_parameters``)."""
        return [(k, p) for k, p in self.named_parameters() if f".modules_by_name.{name}." in k]

    def adapter_parameters(self, name: str) -> list[torch.nn.Parameter]:
        """The parameters of the adapter set ``name`` in every slot."""
        return [p for _, p in self.named_adapter_parameters(name)]

    # freezing (NeMo-like: freeze everything, then unfreeze what trains) -------------------
    def freeze(self, patterns: list[str] | None = None) -> None:
        """Freeze every parameter, or those whose name matches a glob of ``patterns``.

        Example:
            >>> m = build_model({"encoder": {"output_size": 16, "attention_heads": 2, "linear_units": 32,
            ...                  "num_blocks": 1}, "decoder": {"attention_heads": 2, "linear_units": 32,
            ...                  "num_blocks": 1}}, {"en": 5, "ro": 6})
            >>> m.add_adapter("ro", bottleneck=4)
            >>> m.freeze(); m.unfreeze_head("ro"); m.unfreeze_adapters(["ro"])
            >>> sorted({k.split(".")[0] for k, p in m.named_parameters() if p.requires_grad})
            ['dec_slots', 'enc_slots', 'heads']
            >>> m.freeze(["heads.*"]); any(p.requires_grad for p in m.heads.parameters())
            False
        """
        set_trainable(self, ["*"] if patterns is None else patterns, False)

    def unfreeze(self, patterns: list[str] | None = None) -> None:
        """Train every parameter, or those whose name matches a glob of ``patterns`` (one must match)."""
        set_trainable(self, ["*"] if patterns is None else patterns, True)

    def unfreeze_head(self, lang: str) -> None:
        """Train the head of ``lang``: its embedding, output layer and CTC layer."""
        if lang not in self.heads:
            raise KeyError(f"no head {lang!r}; the model has {sorted(self.heads)}")
        self.heads[lang].requires_grad_(True)

    def unfreeze_adapters(self, names: list[str]) -> None:
        """Train the adapter sets ``names`` (adapters or fusion layers) in every slot."""
        for name in names:
            if name not in self.adapter_specs:
                raise KeyError(f"no adapter {name!r}; the model has {sorted(self.adapter_specs)}")
            for p in self.adapter_parameters(name):
                p.requires_grad_(True)

    def adapter_config(self) -> dict[str, dict]:
        """The ``model.adapters`` config entries that rebuild this model's adapters as they are now."""
        on = self.enabled_adapters()
        return {
            name: {**spec, "enabled": name in on, "order": on.index(name) if name in on else len(on)}
            for name, spec in self.adapter_specs.items()
        }

    def sizes(self) -> dict[str, int]:
        """What an adapter file must agree with besides the fingerprint."""
        return {
            "d_model": self.d_model,
            "encoder_blocks": len(self.enc_slots),
            "decoder_blocks": len(self.dec_slots),
        }

    def fingerprint(self) -> str:
        """:func:`~asr_transfer.model.adapters.body_fingerprint` of this model's shared body."""
        return adapter_files.body_fingerprint(self.state_dict())

    def save_adapter(
        self, name: str | None, path: str | Path, lang: str | None = None, extra: dict | None = None
    ) -> Path:
        """Write adapter set ``name`` and the head of ``lang`` (default: ``name``) to a small file.

        ``name`` may be ``None`` for a head-only file. ``extra`` holds the tokenizer (``tokens``, ``kind``,
        ``lang``, ``sp_model`` bytes or ``None``) and JSON values: the file holds no pickle
        (:func:`~asr_transfer.model.adapters.save_adapter_file`).
        """
        lang = lang or name
        payload = {
            "name": name,
            "lang": lang,
            "spec": self.adapter_specs[name] if name else None,
            "adapter": self.slot_state_dict(name) if name else {},
            "head": {k: v.clone() for k, v in self.heads[lang].state_dict().items()},
            "vocab_size": self.heads[lang].vocab_size,
            "base": {"fingerprint": self.fingerprint(), "sizes": self.sizes()},
            **(extra or {}),
        }
        return adapter_files.save_adapter_file(payload, path)

    def load_adapter(self, path: str | Path, enable: bool = True) -> dict:
        """Load an adapter file (replacing an adapter and head of the same names); return its contents.

        The file must have been made on this model's body (same fingerprint and sizes), else an
        :class:`~asr_transfer.model.adapters.AdapterFileError` naming the file. Reading it runs
        no code from it, whoever made it (:func:`~asr_transfer.model.adapters.read_adapter_file`).
        With ``enable`` the loaded adapter becomes the only one enabled.
        """
        data = adapter_files.read_adapter_file(path)
        adapter_files.check_fits(data, path, self.fingerprint(), self.sizes())
        name = data["name"]
        # everything is checked before the model changes: a bad file leaves it as it was
        head = LanguageHead(data["vocab_size"], self.d_model)
        head.load_state_dict(data["head"])
        if name:
            spec = adapter_files.normalise_spec(name, data["spec"])
            module = adapter_files.ADAPTER_TYPES[spec["type"]](self.d_model, bottleneck=spec["bottleneck"])
            stacks = {
                "frontend": ("front_slots", len(self.front_slots)),
                "encoder": ("enc_slots", len(self.enc_slots)),
                "decoder": ("dec_slots", len(self.dec_slots)),
            }
            expected = {
                f"{stacks[w][0]}.{i}.modules_by_name.{name}.{k}"
                for w in spec["where"]
                for i in range(stacks[w][1])
                for k in module.state_dict()
            }
            if expected != set(data["adapter"]):
                raise adapter_files.AdapterFileError(
                    f"{path}: adapter {name!r} does not match its spec {spec}"
                )
        device = next(self.parameters()).device
        self.heads[data["lang"]] = head.to(device)
        if name:
            self.remove_adapter(name)
            self.add_adapter(name, **{k: spec[k] for k in ("type", "bottleneck", "where")}, enabled=False)
            self.load_state_dict(data["adapter"], strict=False)
            if enable:
                self.set_enabled([name])
        return data


def build_model(cfg: dict, vocab_sizes: dict[str, int]) -> HybridASR:
    """Build a :class:`HybridASR` from the ``model:`` section of a config."""
    return HybridASR(vocab_sizes=vocab_sizes, **cfg)
