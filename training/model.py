"""Full definition of SASRec with Long-Term Embedding (LTE) integrations, all of it in this single file.

Follows SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation") with two departures
that RecBole's `SASRec` also makes: a full-softmax cross-entropy over all items instead of one
sampled negative per position, and pre-LN blocks (GPT-2 style) instead of post-LN. The LTE
integrations follow "Long-Term Embeddings for Balanced Personalization" (Dzhoha & Malykh 2026):

- `none`:        plain SASRec.
- `prefix`:      LTE projected to d_model and placed as token 0, before the items, with its own type
                 embedding and no position; users with an empty LTE get a learned "no LTE" token.
                 Every item position may attend to it (causal mask allows it); it carries no loss.
- `late_fusion`: LTE projected and added to the final hidden state, just before scoring.
- `injection`:   LTE projected and added to every item input embedding.
- `slsrec`:      SLSRec-style disentanglement (../shared/papers/003): the LTE is the long-term
                 representation, the transformer over the recent items the short-term one; an
                 attention gate mixes them per position before scoring, and an InfoNCE loss (in-batch
                 negatives) ties each to its own proxy and away from the other (`contrastive_terms`).

An LTE is one vector per user (B, lte_dim) or, for the multi-interest variant (ENCODE, paper 002),
k cluster vectors (B, k, lte_dim) with a (B, k) mask: `prefix` then places k tokens (largest cluster
first, each with a slot embedding); the other integrations use the masked mean of the k projections.

DARE (paper 001, `dare=True`): a second item table (ID embedding + its own content projection, of
size `attn_dim`) feeds only the attention scores (queries and keys) of every layer; the usual table
feeds only values and the tied output layer. Attention then depends on which items (and positions)
are in the sequence, never on the representation stream, and can be narrower than d_model.

Item index = basis row + 1; index 0 is padding, so the vocabulary is the frozen content basis.
Sequences are left-padded: the last real item is always at index T-1 and has the same position id.
Tensors in, tensors out: no numpy, devices or settings objects in here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

INTEGRATIONS = ("none", "prefix", "late_fusion", "injection", "slsrec")


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, attn_dim: int | None = None):
        """attn_dim None: queries, keys and values from x. Else (DARE) queries and keys come from a
        separate attention stream of width attn_dim, values from x."""
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.attn_dim = attn_dim
        if attn_dim is None:
            self.qkv = nn.Linear(d_model, 3 * d_model)
        else:
            assert attn_dim % n_heads == 0, "attn_dim must be divisible by n_heads"
            self.qk = nn.Linear(attn_dim, 2 * attn_dim)
            self.v = nn.Linear(d_model, d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.n_heads = n_heads
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, a: torch.Tensor | None = None,
                need_weights: bool = False):
        """x (B, T, C); allowed (B, 1, T, T) bool, True where query i may attend to key j;
        a (B, T, attn_dim): the attention stream (DARE only)."""
        B, T, C = x.size()  # batch size, sequence length, d_model
        if self.attn_dim is None:
            q, k, v = self.qkv(x).split(C, dim=2)
        else:
            q, k = self.qk(a).split(self.attn_dim, dim=2)
            v = self.v(x)
        q = q.view(B, T, self.n_heads, -1).transpose(1, 2)  # (B, nh, T, hs); hs = attn_dim / nh under DARE
        k = k.view(B, T, self.n_heads, -1).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, C / nh)
        weights = None
        if need_weights:
            # Explicit path only for the attention diagnostic; same maths as the fused kernel.
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T)
            att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            weights = att
            y = F.dropout(att, self.dropout, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.proj(y)), weights


class FeedForward(nn.Module):
    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.proj = nn.Linear(4 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, attn_dim: int | None = None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.ln_a = nn.LayerNorm(attn_dim) if attn_dim is not None else None
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, attn_dim)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model, dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, a: torch.Tensor | None = None,
                need_weights: bool = False):
        a = self.ln_a(a) if self.ln_a is not None else None
        y, weights = self.attn(self.ln_1(x), allowed, a, need_weights)
        x = x + y
        return x + self.mlp(self.ln_2(x)), weights


class LteProjection(nn.Module):
    """LTE (content space, lte_dim) -> d_model; a learned "no LTE" vector where lte_mask is False."""

    def __init__(self, lte_dim: int, d_model: int):
        super().__init__()
        # Two layers: the LTE is an average of content vectors, and the model must decode a mixture
        # of several tastes from it; one linear map could only point at one direction.
        # LayerNorm first: an average of unit vectors is short (its norm shrinks as tastes spread),
        # and its direction, not its length, says what the user likes.
        self.net = nn.Sequential(nn.LayerNorm(lte_dim), nn.Linear(lte_dim, d_model), nn.GELU(),
                                 nn.Linear(d_model, d_model))
        self.no_lte = nn.Parameter(torch.zeros(d_model))

    def forward(self, lte: torch.Tensor, lte_mask: torch.Tensor) -> torch.Tensor:
        """lte (..., lte_dim) float, lte_mask (...) bool (True = a non-empty LTE) -> (..., d_model)."""
        projected = self.net(lte)
        return torch.where(lte_mask[..., None], projected, self.no_lte.expand_as(projected))


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, k, C) tokens, (B, k) mask -> (B, C) mean of the unmasked tokens; token 0 where none is."""
    weights = mask.float()
    weights[:, 0] = torch.where(mask.any(1), weights[:, 0], 1.0)
    return (tokens * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, hard_negative: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE of (B, C) anchors: the own positive against every other row's positive (in-batch
    negatives) and the own hard negative; cosine similarity / temperature."""
    a, p, n = (F.normalize(t, dim=-1) for t in (anchor, positive, hard_negative))
    logits = torch.cat([a @ p.T, (a * n).sum(-1, keepdim=True)], dim=1) / temperature  # (B, B + 1)
    return F.cross_entropy(logits, torch.arange(a.size(0), device=a.device))


@dataclass(frozen=True)
class SASRecConfig:
    n_items: int  # rows of the content basis; the vocabulary is n_items + 1 (0 = padding)
    lte_dim: int  # dimension of the basis (and so of every LTE)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50  # item positions; the prefix token (if any) comes on top
    dropout: float = 0.2
    integration: str = "none"
    # Item representation = learned ID embedding + a linear map of the item's frozen content vector
    # (its basis row). It puts items and LTEs (averages of the same content vectors) in one space,
    # so the model can read "which items does this LTE point at" without relearning it per item id.
    content_items: bool = True
    lte_tokens: int = 1  # k: vectors per LTE (the multi-interest variant stores k cluster centroids)
    dare: bool = False  # decoupled attention item table (see the module docstring)
    attn_dim: int | None = None  # width of the DARE attention table; None = d_model
    contrastive_weight: float = 0.1  # slsrec: weight of the InfoNCE term in the loss
    contrastive_temperature: float = 0.2

    def __post_init__(self):
        if self.integration not in INTEGRATIONS:
            raise ValueError(f"integration must be one of {INTEGRATIONS}, got {self.integration!r}")
        if self.attn_dim is not None and not self.dare:
            raise ValueError("attn_dim sets the width of the DARE attention table: set dare=True as well")
        if self.integration == "slsrec" and not self.content_items:
            raise ValueError("integration 'slsrec' needs content_items: its long-term proxy is the LTE in item space")

    @property
    def attention_width(self) -> int | None:
        """Width of the DARE attention stream; None without DARE."""
        return (self.attn_dim or self.d_model) if self.dare else None

    def to_dict(self) -> dict:
        return asdict(self)


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig, item_content: torch.Tensor | None = None):
        """item_content: (n_items, lte_dim) basis vectors in basis-row order; required when
        config.content_items, unless the weights come from a checkpoint (they are a buffer)."""
        super().__init__()
        self.config = config
        d = config.d_model
        self.item_emb = nn.Embedding(config.n_items + 1, d, padding_idx=0)
        if config.content_items:
            content = torch.zeros(config.n_items + 1, config.lte_dim)
            if item_content is not None:
                if tuple(item_content.shape) != (config.n_items, config.lte_dim):
                    raise ValueError(f"item_content must be ({config.n_items}, {config.lte_dim}), "
                                     f"got {tuple(item_content.shape)}: pass basis.vectors of the training basis")
                content[1:] = torch.as_tensor(item_content, dtype=torch.float32)
            self.register_buffer("item_content", content)  # row 0 = padding = zeros
            self.content_proj = nn.Linear(config.lte_dim, d, bias=False)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_dropout = nn.Dropout(config.dropout)
        da = config.attention_width
        self.blocks = nn.ModuleList(Block(d, config.n_heads, config.dropout, da) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        if config.integration != "none":
            self.lte_proj = LteProjection(config.lte_dim, d)
        if config.integration == "prefix":
            self.prefix_type = nn.Parameter(torch.zeros(d))  # marks the prefix tokens as "not an item"
            if config.lte_tokens > 1:
                self.prefix_slot = nn.Parameter(torch.zeros(config.lte_tokens, d))  # cluster rank 0..k-1
        if config.integration == "slsrec":
            # Attention gate: scores each candidate (long-term, short-term) against the short-term state.
            self.fusion = nn.Sequential(nn.Linear(3 * d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))
        if da is not None:  # DARE: the attention table and everything else of the attention stream
            self.attn_item_emb = nn.Embedding(config.n_items + 1, da, padding_idx=0)
            if config.content_items:
                self.attn_content_proj = nn.Linear(config.lte_dim, da, bias=False)
            self.attn_pos_emb = nn.Embedding(config.max_len, da)
            if config.integration in ("prefix", "injection"):
                self.attn_lte_proj = LteProjection(config.lte_dim, da)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2 initialisation; the output layer is tied to item_emb, so 0.02 keeps first logits small.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, d_model) representation of every item, shared by input and output (tied)."""
        if self.config.content_items:
            return self.item_emb.weight + self.content_proj(self.item_content)
        return self.item_emb.weight

    def attention_table(self) -> torch.Tensor:
        """DARE: (n_items + 1, attn_dim) item vectors used only for queries and keys."""
        if self.config.content_items:
            return self.attn_item_emb.weight + self.attn_content_proj(self.item_content)
        return self.attn_item_emb.weight

    def _as_tokens(self, lte: torch.Tensor, lte_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LTE as (B, k, lte_dim) vectors and a (B, k) mask, whichever form it came in."""
        if lte.dim() == 2:  # one vector per user
            lte, lte_mask = lte[:, None], lte_mask[:, None]
        if lte.size(1) != self.config.lte_tokens:
            raise ValueError(f"the model reads {self.config.lte_tokens} LTE vector(s) per user, got {lte.size(1)}: "
                             "train it on the LTE variant it is served with")
        return lte, lte_mask

    def _encode(self, items: torch.Tensor, lte: torch.Tensor | None, lte_mask: torch.Tensor | None,
                need_weights: bool = False):
        """(hidden (B, L, C), attention per layer or None, aux) where aux holds what the slsrec loss reads."""
        B, L = items.size()
        config = self.config
        integration = config.integration
        if L > config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {config.max_len}")
        positions = torch.arange(config.max_len - L, config.max_len, device=items.device)
        item_vectors = F.embedding(items, self.item_table())  # (B, L, C)
        x = item_vectors + self.pos_emb(positions)
        dare = config.dare
        a = F.embedding(items, self.attention_table()) + self.attn_pos_emb(positions) if dare else None
        valid = items > 0  # (B, L)
        aux = {}
        if integration != "none":
            if lte is None or lte_mask is None:
                raise ValueError(f"integration {integration!r} needs lte and lte_mask")
            lte, token_mask = self._as_tokens(lte, lte_mask)  # (B, k, lte_dim), (B, k)
            tokens = self.lte_proj(lte, token_mask)  # (B, k, C); the "no LTE" vector where masked
            anchor = masked_mean(tokens, token_mask)  # (B, C): one vector for the non-prefix integrations
            if dare and integration in ("prefix", "injection"):
                attn_tokens = self.attn_lte_proj(lte, token_mask)
            if integration == "injection":
                x = x + anchor[:, None, :]
                if dare:
                    a = a + masked_mean(attn_tokens, token_mask)[:, None, :]
            elif integration == "prefix":
                k = tokens.size(1)
                prefix = tokens + self.prefix_type + (self.prefix_slot if k > 1 else 0.0)
                x = torch.cat([prefix, x], dim=1)  # (B, k + L, C)
                if dare:
                    a = torch.cat([attn_tokens, a], dim=1)
                # empty clusters are hidden, except token 0 (the "no LTE" token when all are empty)
                shown = token_mask.clone()
                shown[:, 0] = True
                valid = torch.cat([shown, valid], dim=1)
            elif integration == "slsrec":  # what contrastive_terms reads
                aux.update(long=anchor, lte=lte, lte_mask=token_mask, item_vectors=item_vectors, valid=valid)
        x = self.emb_dropout(x)
        if dare:
            a = self.emb_dropout(a)
        T = x.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=items.device).tril()
        # A query sees earlier real tokens and always itself, so padded rows never become all -inf.
        allowed = (causal & (valid[:, None, :] | torch.eye(T, dtype=torch.bool, device=items.device)))[:, None]
        attention = [] if need_weights else None
        for block in self.blocks:
            x, weights = block(x, allowed, a, need_weights)
            if need_weights:
                attention.append(weights)
        x = self.ln_f(x)
        if integration == "prefix":
            x = x[:, T - L:]  # the prefix positions predict nothing
        elif integration == "late_fusion":
            x = x + anchor[:, None, :]
        elif integration == "slsrec":
            x = self._fuse(aux["long"], x, aux)
        return x, attention, aux

    def _fuse(self, long: torch.Tensor, short: torch.Tensor, aux: dict) -> torch.Tensor:
        """Attention gate of SLSRec: per position, softmax over {long-term, short-term} of a score of
        each candidate against the short-term state; returns the weighted sum (B, L, C)."""
        long = long[:, None, :].expand_as(short)
        candidates = torch.stack([long, short], dim=2)  # (B, L, 2, C)
        query = short[:, :, None, :].expand_as(candidates)
        gate = self.fusion(torch.cat([candidates, query, candidates * query], dim=-1)).softmax(dim=2)  # (B, L, 2, 1)
        aux["short"], aux["gate_long"] = short, gate[:, :, 0, 0]
        return (gate * candidates).sum(2)

    def forward(self, items: torch.Tensor, lte: torch.Tensor | None = None, lte_mask: torch.Tensor | None = None,
                need_weights: bool = False):
        """Hidden states at the item positions.

        items (B, L) int64, left-padded with 0; lte (B, lte_dim) or (B, k, lte_dim) float32; lte_mask
        (B,) or (B, k) bool. Returns (hidden (B, L, d_model), attention) where attention is a list of
        (B, nh, T, T) per layer when need_weights (T = L + k for `prefix`, the LTE tokens first), else None.
        """
        hidden, attention, _ = self._encode(items, lte, lte_mask, need_weights)
        return hidden, attention

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output layer: (..., C) -> (..., n_items + 1); padding index 0 can never be ranked."""
        scores = hidden @ self.item_table().T
        scores[..., 0] = float("-inf")
        return scores

    def contrastive_terms(self, aux: dict) -> torch.Tensor:
        """SLSRec's self-supervised term at each sequence's last position, users with an LTE only
        (`aux` from `_encode` with integration slsrec).

        Proxies in item space: long-term = the content part of the LTE's item representation
        (content_proj of the basis average, exactly the mean content part of the window's items);
        short-term = the mean representation of the input items. The long-term representation must
        pick its own long proxy out of the batch's and over its own short proxy; the short-term
        representation the reverse (InfoNCE, in-batch negatives)."""
        has_lte = aux["lte_mask"].any(1)
        if int(has_lte.sum()) < 2:
            return aux["short"].new_zeros(())
        long_proxy = self.content_proj(masked_mean(aux["lte"][has_lte], aux["lte_mask"][has_lte]))  # (n, C)
        valid = aux["valid"][has_lte].float()[..., None]
        short_proxy = (aux["item_vectors"][has_lte] * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        long, short = aux["long"][has_lte], aux["short"][has_lte, -1]
        tau = self.config.contrastive_temperature
        return 0.5 * (info_nce(long, long_proxy, short_proxy, tau) + info_nce(short, short_proxy, long_proxy, tau))

    def loss_terms(self, items: torch.Tensor, targets: torch.Tensor, lte: torch.Tensor | None = None,
                   lte_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{"next_item": mean full-softmax cross-entropy over every non-padded position, and for
        slsrec "contrastive"}. targets (B, L): targets[b, t] follows items[b, :t+1]; 0 = no target."""
        hidden, _, aux = self._encode(items, lte, lte_mask)
        keep = targets > 0
        # Logits only where there is a target: padded positions would cost a full (V,) row each.
        terms = {"next_item": F.cross_entropy(self.logits(hidden[keep]), targets[keep])}
        if self.config.integration == "slsrec":
            terms["contrastive"] = self.contrastive_terms(aux)
        return terms

    def loss(self, items: torch.Tensor, targets: torch.Tensor, lte: torch.Tensor | None = None,
             lte_mask: torch.Tensor | None = None, terms_out: dict | None = None) -> torch.Tensor:
        """The training objective: next-item cross-entropy (+ contrastive_weight x InfoNCE for slsrec).
        terms_out, if given, receives the detached terms (for logging)."""
        terms = self.loss_terms(items, targets, lte, lte_mask)
        if terms_out is not None:
            terms_out.update({name: float(value.detach()) for name, value in terms.items()})
        return terms["next_item"] + self.config.contrastive_weight * terms.get("contrastive", 0.0)

    @torch.no_grad()
    def score_all(self, items: torch.Tensor, lte: torch.Tensor | None = None,
                  lte_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item for the next position after each sequence: (B, n_items + 1), [:, 0] = -inf."""
        hidden, _ = self(items, lte, lte_mask)
        return self.logits(hidden[:, -1])

    @torch.no_grad()
    def attention(self, items: torch.Tensor, lte: torch.Tensor | None = None,
                  lte_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Attention weights per layer, each (B, nh, T, T); T = L + k with the prefix tokens first."""
        _, attention = self(items, lte, lte_mask, need_weights=True)
        return attention

    @torch.no_grad()
    def long_term_gate(self, items: torch.Tensor, lte: torch.Tensor, lte_mask: torch.Tensor) -> torch.Tensor:
        """slsrec: (B,) weight the fusion gate gives the long-term representation at the last position."""
        _, _, aux = self._encode(items, lte, lte_mask)
        return aux["gate_long"][:, -1]
