"""Source-free test-time adaptation while decoding: SUTA (Lin et al., Interspeech 2022).

No adaptation data and no transcripts: before an utterance (or a batch) is decoded, a few gradient
steps lower the entropy of its temperature-smoothed CTC posteriors and their minimum class confusion
(MCC: the share of the posteriors' token co-occurrence mass off the diagonal), updating only a small
set of encoder parameters (by default the LayerNorm gains and biases); the adapted encoder output is
then decoded as usual (CTC greedy or the joint beam: the attention decoder is not adapted, it reads
the adapted encoder output). The parameters are put back, bit for bit, after each unit, so a
hypothesis never depends on what was decoded before it and the model on disk is never changed.

Options are fields of :class:`~asr_transfer.decode.search.DecodeConfig` (``tta*``; every one is also
a decode flag, e.g. ``asr-transfer decode --tta suta --tta_steps 3``); ``conf/decode/ctc_greedy_suta.yaml``
holds the values chosen on the dev sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from asr_transfer.model.asr import HybridASR

if TYPE_CHECKING:
    from asr_transfer.decode.search import DecodeConfig

METHODS = ("none", "suta")
SCOPES = ("utterance", "batch")
#: parameter groups that ``tta_params`` may list (comma-separated); all live in the encoder, so the
#: attention decoder and the output layers stay the source model's
PARAM_GROUPS = ("ln", "frontend", "encoder")


def check_options(cfg: DecodeConfig) -> None:
    """A clear error for an unknown TTA method, scope or parameter group, or a bad number.

    Example:
        >>> from asr_transfer.decode.search import DecodeConfig
        >>> check_options(DecodeConfig(tta="suta", tta_params="ln,frontend"))
        >>> check_options(DecodeConfig(tta="tent"))
        Traceback (most recent call last):
        ...
        ValueError: unknown test-time adaptation 'tent': use one of none, suta
    """
    if cfg.tta not in METHODS:
        raise ValueError(f"unknown test-time adaptation {cfg.tta!r}: use one of {', '.join(METHODS)}")
    if cfg.tta_scope not in SCOPES:
        raise ValueError(f"unknown tta_scope {cfg.tta_scope!r}: use one of {', '.join(SCOPES)}")
    bad = [g for g in _groups(cfg.tta_params) if g not in PARAM_GROUPS]
    if bad or not _groups(cfg.tta_params):
        raise ValueError(f"tta_params {cfg.tta_params!r}: list some of {', '.join(PARAM_GROUPS)}")
    if cfg.tta_steps < 0 or cfg.tta_lr <= 0 or cfg.tta_temperature <= 0:
        raise ValueError("tta_steps must be >= 0, tta_lr and tta_temperature > 0")


def _groups(spec: str) -> list[str]:
    return [g.strip() for g in str(spec).split(",") if g.strip()]


def adapted_parameters(model: HybridASR, spec: str) -> list[torch.nn.Parameter]:
    """The encoder parameters that ``spec`` (comma-separated groups) names, each once.

    ``ln``: every LayerNorm's gain and bias in the encoder (SUTA's default); ``frontend``: the
    convolutional subsampling (SUTA's "feature extractor" option); ``encoder``: all of it.

    Example:
        >>> from asr_transfer.model.asr import build_model
        >>> m = build_model({"encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64,
        ...                  "num_blocks": 2}, "decoder": {"attention_heads": 2, "linear_units": 64,
        ...                  "num_blocks": 1}}, {"en": 12})
        >>> sum(p.numel() for p in adapted_parameters(m, "ln"))  # 2 blocks x 2 norms + final, 2 x 32 each
        320
    """
    groups = _groups(spec)
    chosen: dict[int, torch.nn.Parameter] = {}
    encoder = model.encoder
    if "encoder" in groups:
        chosen.update((id(p), p) for p in encoder.parameters())
    if "frontend" in groups:
        chosen.update((id(p), p) for p in encoder.embed.parameters())
    if "ln" in groups:
        for module in encoder.modules():
            if isinstance(module, torch.nn.LayerNorm):
                chosen.update((id(p), p) for p in module.parameters())
    return list(chosen.values())


def suta_loss(logits: torch.Tensor, lens: torch.Tensor, cfg: DecodeConfig) -> torch.Tensor:
    """SUTA's objective on ``(B, T, V)`` CTC logits with ``(B,)`` valid frames, averaged over utterances.

    ``tta_em_weight`` x entropy of ``softmax(logits / T)`` (over the frames whose best token is not
    blank when ``tta_non_blank``, as in the paper, where blank frames are confident already and
    would dominate; over every frame otherwise, which the tiny model's dev sets preferred)
    + ``tta_mcc_weight`` x MCC: with ``P`` the utterance's ``(T, V)`` smoothed posteriors and
    ``C = P^T P`` row-normalised, the off-diagonal mass of ``C`` over ``V``.

    Example:
        >>> from asr_transfer.decode.search import DecodeConfig
        >>> sharp = torch.tensor([[[9.0, 0, 0], [0, 9, 0], [0, 0, 9]]])
        >>> flat = torch.zeros(1, 3, 3)
        >>> cfg = DecodeConfig(tta_temperature=1.0)
        >>> bool(suta_loss(sharp, torch.tensor([3]), cfg) < suta_loss(flat, torch.tensor([3]), cfg))
        True
    """
    total = logits.new_zeros(())
    for x, n in zip(logits, lens.tolist(), strict=True):
        x = x[:n] / cfg.tta_temperature
        p = x.softmax(-1)
        entropy = -(p * x.log_softmax(-1)).sum(-1)  # (T,)
        if cfg.tta_non_blank:
            keep = x.argmax(-1) != 0
            # an utterance decoded as all blanks still has an entropy to lower
            entropy = entropy[keep] if bool(keep.any()) else entropy
        cov = p.transpose(0, 1) @ p  # (V, V)
        cov = cov / cov.sum(1, keepdim=True).clamp_min(1e-12)
        mcc = (cov.sum() - cov.trace()) / x.size(-1)
        total = total + cfg.tta_em_weight * entropy.mean() + cfg.tta_mcc_weight * mcc
    return total / logits.size(0)


def adapted_encode(
    model: HybridASR, feats: torch.Tensor, feat_lens: torch.Tensor, lang: str, cfg: DecodeConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, 80)`` features -> ``(B, T', D)`` encoder output and ``(B,)`` lengths, each unit
    (utterance, or the whole batch with ``tta_scope: batch``) encoded after ``tta_steps`` Adam steps
    of :func:`suta_loss` on it from the source parameters.

    The model's parameters and their ``requires_grad`` flags are the same, bit for bit, when it
    returns (or raises). Per utterance, each is encoded alone (no padding), so its hypothesis does
    not depend on the others in the batch.
    """
    check_options(cfg)
    params = adapted_parameters(model, cfg.tta_params)
    source = [p.detach().clone() for p in params]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    grads = [p.grad for p in params]  # backward and Adam touch only these
    ctc_layer = model.heads[lang].ctc.ctc_lo
    if cfg.tta_scope == "utterance":
        units = [(feats[i : i + 1, : int(n)], feat_lens[i : i + 1]) for i, n in enumerate(feat_lens)]
    else:
        units = [(feats, feat_lens)]
    outs: list[torch.Tensor] = []
    lens: list[torch.Tensor] = []
    # decoding runs under inference mode; adaptation needs autograd and normal (non-inference) tensors
    with torch.inference_mode(False), torch.enable_grad():
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            for x, n in units:
                x, n = x.clone(), n.clone()
                optim = torch.optim.Adam(params, lr=cfg.tta_lr)
                for _ in range(cfg.tta_steps):
                    enc, enc_lens, _ = model.encode(x, n, exact_lengths=True)
                    loss = suta_loss(ctc_layer(enc), enc_lens, cfg)
                    optim.zero_grad(set_to_none=True)
                    loss.backward()
                    optim.step()
                with torch.no_grad():
                    enc, enc_lens, _ = model.encode(x, n, exact_lengths=True)
                    outs.append(enc)
                    lens.append(enc_lens)
                    _restore(params, source)
        finally:
            _restore(params, source)
            for p, flag in flags:
                p.requires_grad_(flag)
            for p, grad in zip(params, grads, strict=True):
                p.grad = grad
    enc_out = torch.nn.utils.rnn.pad_sequence([o for out in outs for o in out], batch_first=True)
    return enc_out, torch.cat(lens)


def _restore(params: list[torch.nn.Parameter], source: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, s in zip(params, source, strict=True):
            p.copy_(s)
