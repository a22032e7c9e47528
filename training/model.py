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

INTEGRATIONS = ("none", "prefix", "late_fusion", "injection")


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.n_heads = n_heads
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, need_weights: bool = False):
        """x (B, T, C); allowed (B, 1, T, T) bool, True where query i may attend to key j."""
        B, T, C = x.size()  # batch size, sequence length, d_model
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
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

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model, dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, need_weights: bool = False):
        a, weights = self.attn(self.ln_1(x), allowed, need_weights)
        x = x + a
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
        """lte (B, lte_dim) float, lte_mask (B,) bool (True = the user has a non-empty LTE) -> (B, d_model)."""
        projected = self.net(lte)
        return torch.where(lte_mask[:, None], projected, self.no_lte.expand_as(projected))


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

    def __post_init__(self):
        if self.integration not in INTEGRATIONS:
            raise ValueError(f"integration must be one of {INTEGRATIONS}, got {self.integration!r}")

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
        self.blocks = nn.ModuleList(Block(d, config.n_heads, config.dropout) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        if config.integration != "none":
            self.lte_proj = LteProjection(config.lte_dim, d)
        if config.integration == "prefix":
            self.prefix_type = nn.Parameter(torch.zeros(d))  # marks token 0 as "not an item"
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

    def forward(self, items: torch.Tensor, lte: torch.Tensor | None = None, lte_mask: torch.Tensor | None = None,
                need_weights: bool = False):
        """Hidden states at the item positions.

        items (B, L) int64, left-padded with 0; lte (B, lte_dim) float32; lte_mask (B,) bool.
        Returns (hidden (B, L, d_model), attention) where attention is a list of (B, nh, T, T) per layer
        when need_weights (T = L + 1 for `prefix`, key/query 0 being the LTE token), else None.
        """
        B, L = items.size()
        integration = self.config.integration
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        positions = torch.arange(self.config.max_len - L, self.config.max_len, device=items.device)
        x = F.embedding(items, self.item_table()) + self.pos_emb(positions)  # (B, L, C)
        valid = items > 0  # (B, L)
        if integration != "none":
            if lte is None or lte_mask is None:
                raise ValueError(f"integration {integration!r} needs lte and lte_mask")
            anchor = self.lte_proj(lte, lte_mask)  # (B, C)
            if integration == "injection":
                x = x + anchor[:, None, :]
            elif integration == "prefix":
                x = torch.cat([(anchor + self.prefix_type)[:, None, :], x], dim=1)  # (B, L+1, C)
                valid = torch.cat([valid.new_ones(B, 1), valid], dim=1)
        x = self.emb_dropout(x)
        T = x.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=items.device).tril()
        # A query sees earlier real tokens and always itself, so padded rows never become all -inf.
        allowed = (causal & (valid[:, None, :] | torch.eye(T, dtype=torch.bool, device=items.device)))[:, None]
        attention = [] if need_weights else None
        for block in self.blocks:
            x, weights = block(x, allowed, need_weights)
            if need_weights:
                attention.append(weights)
        x = self.ln_f(x)
        if integration == "prefix":
            x = x[:, 1:]  # the prefix position predicts nothing
        elif integration == "late_fusion":
            x = x + anchor[:, None, :]
        return x, attention

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output layer: (..., C) -> (..., n_items + 1); padding index 0 can never be ranked."""
        scores = hidden @ self.item_table().T
        scores[..., 0] = float("-inf")
        return scores

    def loss(self, items: torch.Tensor, targets: torch.Tensor, lte: torch.Tensor | None = None,
             lte_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean full-softmax cross-entropy of next-item prediction over every non-padded position.

        targets (B, L): targets[b, t] is the item that followed items[b, :t+1]; 0 = no target.
        """
        hidden, _ = self(items, lte, lte_mask)
        keep = targets > 0
        # Logits only where there is a target: padded positions would cost a full (V,) row each.
        return F.cross_entropy(self.logits(hidden[keep]), targets[keep])

    @torch.no_grad()
    def score_all(self, items: torch.Tensor, lte: torch.Tensor | None = None,
                  lte_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item for the next position after each sequence: (B, n_items + 1), [:, 0] = -inf."""
        hidden, _ = self(items, lte, lte_mask)
        return self.logits(hidden[:, -1])

    @torch.no_grad()
    def attention(self, items: torch.Tensor, lte: torch.Tensor | None = None,
                  lte_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Attention weights per layer, each (B, nh, T, T); T = L + 1 with the prefix at index 0."""
        _, attention = self(items, lte, lte_mask, need_weights=True)
        return attention
