"""Joint CTC/attention beam search vectorised over utterances and beams.

All ``B * beam`` hypotheses of a batch advance together: one incremental
decoder step and one call of a CTC prefix scorer with the results of ESPnet's
batched ``CTCPrefixScoreTH`` (:class:`VectorCTCPrefixScore`, equal to float
rounding) per output position, then a per-utterance top-k over ``beam * vocab``
candidates. The rules are those of ESPnet's ``BatchBeamSearch``
(``pre_beam_score_key="full"``), so the results match it: the same score
``(1 - ctc_weight) * att + ctc_weight * ctc + length_penalty * len``, the same
pre-beam, the same ``<eos>`` handling at the maximum length and the same end
detection (Watanabe et al., 2017, Eq. 50) when ``maxlen_ratio == 0``.

An utterance also stops once no running hypothesis can beat its best finished
one (with ``length_penalty <= 0`` scores only fall as a hypothesis grows, so
this never changes the result); finished utterances leave the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from espnet.nets.ctc_prefix_score import CTCPrefixScoreTH
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

from asr_transfer.model.asr import HybridASR

#: ESPnet's end detection: stop when the best hypotheses that ended at the last
#: ``END_M`` lengths are all worse than the best so far by more than ``-END_D``
END_M, END_D = 3, math.log(math.exp(-10))
#: ESPnet's pre-beam: the attention score's top ``int(PRE_BEAM_RATIO * beam)`` tokens get CTC scores
PRE_BEAM_RATIO = 1.5


def max_lengths(enc_lens: torch.Tensor, maxlen_ratio: float) -> torch.Tensor:
    """ESPnet's maximum output length per utterance (``(B,)`` encoder lengths -> ``(B,)``).

    Example:
        >>> max_lengths(torch.tensor([40, 7]), 0.0).tolist(), max_lengths(torch.tensor([40, 7]), 0.5).tolist()
        ([40, 7], [20, 3])
        >>> max_lengths(torch.tensor([40, 7]), -5).tolist()
        [5, 5]
    """
    if maxlen_ratio == 0:
        return enc_lens.clone()
    if maxlen_ratio < 0:
        return torch.full_like(enc_lens, -int(maxlen_ratio))
    return (maxlen_ratio * enc_lens.double()).long().clamp_min(1)


class VectorCTCPrefixScore(CTCPrefixScoreTH):
    """ESPnet's ``CTCPrefixScoreTH`` (no windowing) computed in fewer, larger operations.

    ``y``: ``(N, L)`` prefixes with ``<sos>``, ``N = B * hyps``, grouped by utterance. ESPnet's
    scorer runs the forward recursion over the frames for every scored token of every hypothesis,
    then keeps the states of the ``beam`` extensions the search selects. The recursion is only
    needed for those, so it runs in :meth:`index_select_state`, for the selected extensions alone,
    with ESPnet's arithmetic. The prefix score ``psi`` of every extension needs no recursion:
    ``psi(g + c) = log sum_t phi_{t-1}(g) p_t(c)``, a product of the hypothesis's ``phi`` over the
    frames with the token posteriors, computed in float64 after scaling ``phi`` by its maximum
    (float32 products of two small probabilities would underflow), as one batched matrix product
    over the whole vocabulary when it is small, else over the gathered scored tokens. ESPnet sums
    in the log domain instead, so the scores agree to float rounding (~1e-6), not bit for bit.

    Example (two utterances, two hypotheses each, first step, against ESPnet's scorer):
        >>> _ = torch.manual_seed(0)
        >>> logp, lens = torch.randn(2, 9, 6).log_softmax(-1), torch.tensor([9, 6])
        >>> y = torch.full((4, 1), 5)  # <sos> = <eos> = 5, blank = 0
        >>> ours, _ = VectorCTCPrefixScore(logp.clone(), lens, 0, 5)(y, None)
        >>> ref, _ = CTCPrefixScoreTH(logp.clone(), lens, 0, 5)(y, None)
        >>> ours.shape, bool(torch.allclose(ours, ref, rtol=1e-5))
        (torch.Size([4, 6]), True)
    """

    def __init__(self, x: torch.Tensor, xlens: torch.Tensor, blank: int, eos: int) -> None:
        super().__init__(x, xlens, blank, eos)
        self._probs: torch.Tensor | None = None  # (B, T, O) float64 posteriors, made at first use

    def __call__(
        self,
        y: torch.Tensor,
        state: tuple | None,
        scoring_ids: torch.Tensor | None = None,
        att_w: None = None,
    ) -> tuple[torch.Tensor, tuple]:
        output_length = y.size(1) - 1
        n_bh = y.size(0)
        n_hyps = n_bh // self.batch
        hyp = torch.arange(n_bh, device=self.device)
        utt = torch.div(hyp, n_hyps, rounding_mode="floor")  # (N,) each hypothesis's utterance
        last = y[:, -1]  # (N,)
        if state is None:
            r_prev = torch.full(
                (self.input_length, 2, self.batch, n_hyps), self.logzero, dtype=self.dtype, device=self.device
            )
            r_prev[:, 1] = torch.cumsum(self.x[0, :, :, self.blank], 0).unsqueeze(2)
            r_prev = r_prev.view(-1, 2, n_bh)  # (T, 2, N)
            s_prev = 0.0
        else:
            r_prev, s_prev = state
        start, end = max(output_length, 1), self.input_length
        r_sum = torch.logsumexp(r_prev, 1)  # (T, N): phi_t of every token but the last one
        # psi sums phi_{t-1} x_t^c over t in [start, end); the first step also has r_0^n = x_0^c
        lo = 0 if output_length == 0 else start
        log_phi = r_sum[start - 1 : end - 1]  # (T', N), T' = end - lo
        phi_rep = r_prev[start - 1 : end - 1, 1]  # a repeated label: the blank-ending paths only
        if output_length == 0:
            log_phi = torch.cat([log_phi.new_zeros(1, n_bh), log_phi])
            phi_rep = torch.cat([phi_rep.new_zeros(1, n_bh), phi_rep])
        top = log_phi.max(0).values  # (N,)
        phi = (log_phi - top).double().exp_()  # (T', N), in (0, 1]
        x_c = self.x[0, lo:end]  # (T', B, O)
        snum = scoring_ids.size(1) if scoring_ids is not None else self.odim
        if scoring_ids is None or self.odim <= n_hyps * snum:
            # the whole vocabulary at once: (B, hyps, T') @ (B, T', O)
            if self._probs is None:
                self._probs = self.x[0].transpose(0, 1).double().exp()
            probs = self._probs[:, lo:end]
            psi = torch.bmm(phi.t().reshape(self.batch, n_hyps, -1), probs).view(n_bh, self.odim)
        else:  # only the scored tokens: (N, 1, T') @ (N, T', S)
            probs = x_c[:, utt[:, None], scoring_ids].double().exp_()  # (T', N, S)
            psi = torch.bmm(phi.t().unsqueeze(1), probs.permute(1, 0, 2)).view(n_bh, snum)
        log_psi_ = psi.log_().add_(top[:, None]).clamp_min_(self.logzero).to(self.dtype)
        # the last token again: phi is r^b, one column per hypothesis
        top_rep = phi_rep.max(0).values
        p_last = x_c[:, utt, last].double().exp_()  # (T', N)
        rep = ((phi_rep - top_rep).double().exp_() * p_last).sum(0).log_().add_(top_rep)
        rep = rep.clamp_min_(self.logzero).to(self.dtype)
        if scoring_ids is None:
            log_psi = log_psi_
            log_psi[hyp, last] = rep
        else:  # the scored tokens only, the others logzero, as ESPnet
            if psi.size(1) == self.odim:  # the product ran over the whole vocabulary
                log_psi_ = log_psi_.gather(1, scoring_ids)
            log_psi = torch.full((n_bh, self.odim), self.logzero, dtype=self.dtype, device=self.device)
            log_psi.scatter_(1, scoring_ids, log_psi_)
            scored = (scoring_ids == last[:, None]).any(1)
            log_psi[hyp[scored], last[scored]] = rep[scored]
        log_psi[:, self.eos] = r_sum[self.end_frames.repeat_interleave(n_hyps), hyp]
        if self.eos != self.blank:
            log_psi[:, self.blank] = self.logzero
        return log_psi - s_prev, (r_prev, r_sum, log_psi, last, output_length, scoring_ids)

    def index_select_state(self, state: tuple, best_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The selected extensions' states: ``best_ids`` ``(B, W)`` in each utterance's ``hyps * O``.

        Returns ``r`` ``(T, 2, B*W)``, the forward variables of each extension, and ``s``
        ``(B*W, O)``, its prefix score (ESPnet's state without its windowing bounds).
        """
        r_prev, r_sum, log_psi, last, output_length, scoring_ids = state
        n_hyps = log_psi.size(0) // self.batch
        slot = torch.div(best_ids, self.odim, rounding_mode="floor")  # (B, W) hypothesis in its utterance
        hyp = (slot + (self.idx_b * n_hyps)[:, None]).view(-1)
        label = torch.fmod(best_ids, self.odim).view(-1)
        s_new = log_psi[hyp, label][:, None].expand(-1, self.odim)
        if scoring_ids is not None:
            # as ESPnet: a token that was not scored takes the state of the hypothesis's first scored one
            label = torch.where((scoring_ids[hyp] == label[:, None]).any(1), label, scoring_ids[hyp, 0])
        n = hyp.numel()
        utt = torch.div(hyp, n_hyps, rounding_mode="floor")
        x_now = torch.stack((self.x[0][:, utt, label], self.x[0][:, utt, self.blank]), 1)  # (T, 2, n)
        # z[t] holds r_t^n, phi_t, r_t^b: (phi, r^b) side by side make each frame's update one
        # logaddexp against r^n, written in place (ESPnet stacks them anew at every frame)
        z = torch.empty((self.input_length, 3, n), dtype=self.dtype, device=self.device)
        r = z[:, 0::2]  # (T, 2, n) view
        start, end = max(output_length, 1), self.input_length
        r[:start] = self.logzero  # the frames before the prefix's length; the loop writes the rest
        if output_length == 0:
            r[0, 0] = x_now[0, 0]
        # a repeated label needs a blank in between: its phi is the blank-ending path only
        z[:, 1] = torch.where(label == last[hyp], r_prev[:, 1, hyp], r_sum[:, hyp])
        r_n, phi_b, r_t = z[:, 0].unbind(0), z[:, 1:].unbind(0), r.unbind(0)
        for t, x_t in zip(range(start, end), x_now[start:end].unbind(0)):  # x_t: (2, n) of frame t
            # r_t^n = (r_{t-1}^n + phi_{t-1}) x_t^c, r_t^b = (r_{t-1}^n + r_{t-1}^b) x_t^blank, in log space
            torch.logaddexp(r_n[t - 1], phi_b[t - 1], out=r_t[t])
            r_t[t].add_(x_t)
        return r, s_new


class _Batch:
    """The per-utterance tensors of the search, kept together so finished utterances can leave."""

    def __init__(
        self,
        model: HybridASR,
        enc_out: torch.Tensor,
        enc_lens: torch.Tensor,
        lang: str,
        beam: int,
        use_att: bool,
        use_ctc: bool,
        eos: int,
    ) -> None:
        # (B,) positions in the caller's batch
        self.ids = torch.arange(enc_out.size(0), device=enc_out.device)
        self.enc_out, self.enc_lens = enc_out, enc_lens
        self.beam, self.use_ctc, self.eos = beam, use_ctc, eos
        self.ctc_logp = model.ctc_log_probs(enc_out, lang) if use_ctc else None  # (B, T, V)
        # the decoder's source-attention keys and values, once per search instead of once per step
        self.src_kv = model.source_kv(enc_out) if use_att else []  # per block (B, 2, H, T, d_k)
        self._setup()

    def _setup(self) -> None:
        t = int(self.enc_lens.max())
        self.enc_out = self.enc_out[:, :t]
        # one memory row per utterance: the decoder broadcasts it over that utterance's hypotheses
        self.memory = self.enc_out  # (B, T, D)
        frames = torch.arange(t, device=self.enc_out.device)
        self.memory_mask = (frames < self.enc_lens[:, None])[:, None]  # (B, 1, T)
        self.src_kv = [kv[:, :, :, :t] for kv in self.src_kv]
        if self.use_ctc:
            self.ctc_logp = self.ctc_logp[:, :t]
            # CTCPrefixScoreTH pads its input in place: give it a copy
            self.ctc = VectorCTCPrefixScore(self.ctc_logp.clone(), self.enc_lens, 0, self.eos)

    def keep(self, keep: torch.Tensor, ctc_state: tuple | None) -> tuple | None:
        """Drop the utterances not in ``keep`` (``(B',)`` indices); returns the CTC state for the rest."""
        hyps = (keep[:, None] * self.beam + torch.arange(self.beam, device=keep.device)).view(-1)  # (B'*K,)
        self.ids, self.enc_out, self.enc_lens = self.ids[keep], self.enc_out[keep], self.enc_lens[keep]
        self.src_kv = [kv[keep] for kv in self.src_kv]
        if self.use_ctc:
            self.ctc_logp = self.ctc_logp[keep]
        self._setup()
        if ctc_state is None:
            return None
        r, s = ctc_state  # r: (T, 2, B*beam), s: (B*beam, V)
        return r[: self.memory.size(1), :, hyps], s[hyps]


@torch.inference_mode()
def batch_beam_search(
    model: HybridASR,
    enc_out: torch.Tensor,
    enc_lens: torch.Tensor,
    lang: str,
    beam_size: int = 10,
    ctc_weight: float = 0.3,
    length_penalty: float = 0.0,
    maxlen_ratio: float = 0.0,
    return_scores: bool = False,
) -> list[list[int]] | tuple[list[list[int]], list[float]]:
    """Beam search of a batch: ``(B, T, D)`` encoder output, ``(B,)`` lengths -> ``B`` token id lists.

    The lists hold neither ``<sos>``/``<eos>`` nor blanks (an attention-only search
    may propose the blank id). ``maxlen_ratio``: as in ESPnet, ``0`` means at most
    ``enc_len`` tokens with end detection, ``> 0`` at most ``ratio * enc_len``,
    ``< 0`` at most ``-ratio`` tokens. With ``return_scores``, also the ``B`` total log-scores of
    the returned hypotheses (``<eos>`` step included), e.g. for pseudo-label confidences.

    Example:
        >>> from asr_transfer.model.asr import build_model
        >>> _ = torch.manual_seed(0)
        >>> model = build_model({"encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64,
        ...                                  "num_blocks": 1},
        ...                      "decoder": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1}},
        ...                     vocab_sizes={"en": 12}).eval()
        >>> enc_out, enc_lens, _ = model.encode(torch.randn(2, 50, 80), torch.tensor([50, 30]))
        >>> hyps = batch_beam_search(model, enc_out, enc_lens, "en", beam_size=3)
        >>> len(hyps), all(0 < t < 11 for h in hyps for t in h)
        (2, True)
        >>> _, scores = batch_beam_search(model, enc_out, enc_lens, "en", beam_size=3, return_scores=True)
        >>> all(s < 0 for s in scores)
        True
    """
    n_utts = enc_out.size(0)
    if n_utts == 0:
        return ([], []) if return_scores else []
    vocab = model.heads[lang].vocab_size
    use_att, use_ctc = ctc_weight < 1, ctc_weight > 0
    pre_beam = int(PRE_BEAM_RATIO * beam_size)
    # as ESPnet: no pre-beam without a CTC scorer; and none without attention scores to rank by
    step = _Scoring(model, lang, beam_size, vocab, ctc_weight, length_penalty, use_att, use_ctc,
                    pre_beam if use_att and use_ctc and pre_beam < vocab else 0)  # fmt: skip
    maxlens = max_lengths(enc_lens, maxlen_ratio).to(enc_out.device)  # (B,)
    longest = int(maxlens.max())
    batch = _Batch(model, enc_out, enc_lens, lang, beam_size, use_att, use_ctc, vocab - 1)
    hyps = _Hyps.start(n_utts, beam_size, vocab - 1, enc_out.device)
    found = _Finished.start(n_utts, longest, vocab - 1, enc_out.device)
    for i in range(longest):
        top, token = hyps.extend(step, batch)
        # finished: <eos>, or any alive hypothesis at the maximum length (ESPnet appends <eos> there)
        alive = top > NEG_INF  # (B', beam)
        is_eos = token == found.eos
        ended = alive & (is_eos | (maxlens[batch.ids] - 1 == i)[:, None])
        found.record(batch.ids, i, top, is_eos, alive, ended, hyps.ys)
        running = alive & ~ended
        hyps.score = top.masked_fill(~running, NEG_INF)
        done = found.done(batch.ids, i, hyps.score, running, length_penalty <= 0, maxlen_ratio == 0)
        if bool(done.all()):
            break
        if bool(done.any()):
            hyps.keep((~done).nonzero().view(-1), batch)
    return found.result(return_scores)


#: the score of a dead hypothesis
NEG_INF = float("-inf")


@dataclass
class _Scoring:
    """How one step scores the candidates: ``(1 - w) * att + w * ctc + length_penalty``."""

    model: HybridASR
    lang: str
    beam: int
    vocab: int
    ctc_weight: float
    length_penalty: float
    use_att: bool
    use_ctc: bool
    #: CTC scores only the attention's top ``pre_beam`` tokens (0: every token)
    pre_beam: int


@dataclass
class _Hyps:
    """The running hypotheses, ``beam`` slots per utterance: ``<sos>`` + tokens, scores, scorer states."""

    ys: torch.Tensor  # (B*beam, L)
    score: torch.Tensor  # (B, beam)
    cache: list[torch.Tensor] | None = None
    ctc_state: tuple | None = None

    @classmethod
    def start(cls, n_utts: int, beam: int, eos: int, device: torch.device) -> _Hyps:
        """Slot 0 of each utterance starts alive (``<sos>``, score 0), the others dead (-inf)."""
        score = torch.full((n_utts, beam), NEG_INF, device=device)
        score[:, 0] = 0.0
        return cls(torch.full((n_utts * beam, 1), eos, dtype=torch.long, device=device), score)

    def extend(self, s: _Scoring, batch: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Extend by one token, keep each utterance's best ``beam``; their ``(B', beam)`` scores, tokens."""
        n, beam, vocab, device = batch.ids.numel(), s.beam, s.vocab, self.ys.device
        weighted = torch.zeros(n * beam, vocab, device=device)  # (N, V), N = B'*beam
        if s.use_att:
            mask = subsequent_mask(self.ys.size(1), device=device).unsqueeze(0)
            hidden, self.cache = s.model.decode_steps(
                self.ys, mask, batch.memory, batch.memory_mask, s.lang, self.cache, batch.src_kv
            )
            att = torch.log_softmax(s.model.heads[s.lang].output(hidden[:, -1]).float(), dim=-1)  # (N, V)
            weighted += (1 - s.ctc_weight) * att
        if s.length_penalty:
            weighted += s.length_penalty
        if s.use_ctc:
            scoring_ids = torch.topk(weighted, s.pre_beam, dim=-1)[1] if s.pre_beam else None  # (N, pre_beam)
            ctc_scores, ctc_full_state = batch.ctc(self.ys, self.ctc_state, scoring_ids)
            weighted += s.ctc_weight * ctc_scores
        weighted += self.score.view(-1, 1)
        top, flat = weighted.view(n, beam * vocab).topk(beam, dim=-1)  # (B', beam)
        prev = torch.div(flat, vocab, rounding_mode="floor")  # (B', beam) slot of the extended hypothesis
        token = flat % vocab
        src = (prev + torch.arange(n, device=device)[:, None] * beam).view(-1)  # (N,)
        # index_select copies whole rows, about twice as fast as advanced indexing on a CPU
        self.ys = torch.cat([self.ys.index_select(0, src), token.view(-1, 1)], dim=1)
        if s.use_att:
            self.cache = [c.index_select(0, src) for c in self.cache]
        if s.use_ctc:
            self.ctc_state = batch.ctc.index_select_state(ctc_full_state, flat)
        return top, token

    def keep(self, keep: torch.Tensor, batch: _Batch) -> None:
        """Keep the utterances ``keep`` (``(B',)`` indices) in the search, here and in ``batch``."""
        beam = self.score.size(1)
        hyps = (keep[:, None] * beam + torch.arange(beam, device=keep.device)).view(-1)
        self.ys, self.score = self.ys[hyps], self.score[keep]
        if self.cache is not None:
            self.cache = [c[hyps] for c in self.cache]
        self.ctc_state = batch.keep(keep, self.ctc_state)


@dataclass
class _Finished:
    """Finished hypotheses, in the caller's batch order: best score and its tokens; the best score
    per hypothesis length (``<sos>`` and ``<eos>`` included, as ESPnet counts) for the end detection."""

    eos: int
    best: torch.Tensor  # (B,) float64
    seq: torch.Tensor  # (B, longest + 1)
    length: torch.Tensor  # (B,)
    by_len: torch.Tensor  # (B, longest + 3) float64

    @classmethod
    def start(cls, n_utts: int, longest: int, eos: int, device: torch.device) -> _Finished:
        return cls(
            eos,
            torch.full((n_utts,), NEG_INF, dtype=torch.float64, device=device),
            torch.full((n_utts, longest + 1), eos, dtype=torch.long, device=device),
            torch.zeros(n_utts, dtype=torch.long, device=device),
            torch.full((n_utts, longest + 3), NEG_INF, dtype=torch.float64, device=device),
        )

    def record(self, ids: torch.Tensor, i: int, top: torch.Tensor, is_eos: torch.Tensor,
               alive: torch.Tensor, ended: torch.Tensor, ys: torch.Tensor) -> None:  # fmt: skip
        """Keep step ``i``'s best ended hypothesis of each utterance ``ids`` if it beats the best so far."""
        n, beam = top.shape
        ended_score = top.double().masked_fill(~ended, NEG_INF)
        step_best, arg = ended_score.max(dim=-1)  # (B',)
        # ties keep the earlier hypothesis, like ESPnet's stable sort of its finished list
        better = step_best > self.best[ids]
        pick = arg + torch.arange(n, device=top.device) * beam
        rows = ids[better]
        self.best[rows] = step_best[better]
        self.seq[rows, : i + 1] = ys[pick[better], 1:]
        self.length[rows] = i + 1 - is_eos.view(-1)[pick[better]].long()
        eos_best = top.double().masked_fill(~(alive & is_eos), NEG_INF).max(dim=-1).values
        self.by_len[ids, i + 2] = eos_best

    def done(self, ids: torch.Tensor, i: int, score: torch.Tensor, running: torch.Tensor,
             cannot_improve: bool, end_detect: bool) -> torch.Tensor:  # fmt: skip
        """``(B',)``: the utterances whose search is over after step ``i``.

        Over when nothing runs; when no running score beats the best finished one (if scores only
        fall, ``cannot_improve``); or by ESPnet's end detection (``end_detect``).
        """
        done = ~running.any(dim=-1)
        if cannot_improve:
            done |= score.max(dim=-1).values.double() < self.best[ids]
        if end_detect and i >= END_M - 1:
            recent = self.by_len[ids, i - END_M + 1 : i + 1]  # lengths i-2 .. i
            worse = (recent > NEG_INF) & (recent - self.best[ids, None] < END_D)
            done |= worse.all(dim=-1)
        return done

    def result(self, return_scores: bool) -> list[list[int]] | tuple[list[list[int]], list[float]]:
        """The token lists (no ``<sos>``/``<eos>``, no blanks) and, if asked, their scores."""
        out = [[t for t in seq[:n] if t not in (0, self.eos)] for seq, n in
               zip(self.seq.tolist(), self.length.tolist())]  # fmt: skip
        return (out, self.best.tolist()) if return_scores else out
