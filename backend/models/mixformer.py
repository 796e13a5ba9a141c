"""MixFormer block: window attention and depthwise convolution mixed by bidirectional interactions.

Q. Chen, Q. Wu, J. Wang, Q. Hu, T. Hu, E. Ding, J. Cheng, J. Wang, "MixFormer: Mixing
Features across Windows and Dimensions", CVPR 2022, pp. 5239-5249. Used by MU-Net (Zhang et
al., Remote Sensing 15(14):3559, 2023) with window 8 and 8 heads.

Block: ``x + MixAttn(LN(x))`` then ``x + MLP(LN(x))`` (MLP ratio 4, GELU). MixAttn runs two
branches in parallel on the normalised input (B, H, W, C):

- attention branch: linear C -> C/2 + LN, window self-attention (non-shifted windows of
  ``window x window`` tokens, ``heads`` heads, learnt relative position bias);
- conv branch: linear C -> C + LN, depthwise 3x3 conv, BN, GELU; later 1x1 conv C -> C/2.
- channel interaction (conv -> attention): the conv features averaged over each window ->
  1x1 (C/8) -> BN-GELU -> 1x1 (C/2) -> sigmoid, scaling the attention *values* of that window;
- spatial interaction (attention -> conv): the attention output -> 1x1 (C/16) -> BN-GELU ->
  1x1 (1) -> sigmoid, scaling the conv branch per pixel;
- the attention output (LN) and the conv output (BN) are concatenated (C) -> linear C -> C.

Design decisions:

- The depthwise conv runs on the whole (padded) map, not inside each window, so it also
  connects neighbouring windows (the "mixing across windows" of the paper).
- Inputs whose H or W is not a multiple of the window are zero-padded at the bottom/right and
  cropped back. Padded tokens are masked out as attention keys and left out of the per-window
  channel pooling, so padding does not leak into the real pixels through attention.
- ``heads`` is reduced (halved until it divides C/2 with at least 4 channels per head) when
  C/2 is too small for 8 heads, e.g. at tiny test widths; C/8 and C/16 are at least 1.
- BatchNorm in the channel interaction sees one value per window and batch item; when a
  training batch holds a single window (batch 1, maps <= 8 px) it normalises with its running
  statistics instead of failing (a 256 tile already has 2 x 2 windows at 1/16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.blocks import pad_to_multiple


def choose_heads(attn_channels: int, heads: int = 8, min_head_dim: int = 4) -> int:
    """Largest power-of-two fraction of ``heads`` that divides ``attn_channels`` evenly with at
    least ``min_head_dim`` channels per head (at least 1 head)."""
    while heads > 1 and (attn_channels % heads or attn_channels // heads < min_head_dim):
        heads //= 2
    return heads


def relative_position_index(window: int) -> torch.Tensor:
    """(window^2, window^2) int64: index into a ((2 window - 1)^2)-entry bias table."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), in [0, 2w-2]
    return rel[0] * (2 * window - 1) + rel[1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of window -> (B * nH * nW, window^2, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_merge(x: torch.Tensor, window: int, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of window_partition: (B * nH * nW, window^2, C) -> (B, H, W, C)."""
    c = x.shape[-1]
    x = x.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class MixingAttention(nn.Module):
    """MixAttn of a MixFormer block; (B, H, W, C) -> (B, H, W, C), any H, W."""

    def __init__(self, dim: int, window: int = 8, heads: int = 8) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"MixFormer needs an even channel count, got {dim}")
        half = dim // 2
        self.window = window
        self.heads = choose_heads(half, heads)
        self.scale = (half // self.heads) ** -0.5

        self.proj_attn = nn.Linear(dim, half)
        self.proj_attn_norm = nn.LayerNorm(half)
        self.proj_cnn = nn.Linear(dim, dim)
        self.proj_cnn_norm = nn.LayerNorm(dim)

        self.dwconv = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2d(dim), nn.GELU()
        )
        self.channel_reduce = nn.Conv2d(dim, max(1, dim // 8), 1)
        self.channel_norm = nn.BatchNorm2d(max(1, dim // 8))
        self.channel_expand = nn.Conv2d(max(1, dim // 8), half, 1)
        self.projection = nn.Conv2d(dim, half, 1)
        self.conv_norm = nn.BatchNorm2d(half)

        self.qkv = nn.Linear(half, 3 * half)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, self.heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer(
            "bias_index", relative_position_index(window).flatten(), persistent=False
        )
        self.spatial_interaction = nn.Sequential(
            nn.Conv2d(half, max(1, dim // 16), 1),
            nn.BatchNorm2d(max(1, dim // 16)),
            nn.GELU(),
            nn.Conv2d(max(1, dim // 16), 1, 1),
        )
        self.attn_norm = nn.LayerNorm(half)
        self.proj = nn.Linear(dim, dim)

    def channel_interaction(self, pooled: torch.Tensor) -> torch.Tensor:
        """Per-window pooled conv features (B, C, nH, nW) -> gate logits (B, C/2, nH, nW)."""
        y = self.channel_reduce(pooled)
        if self.training and y.shape[0] * y.shape[2] * y.shape[3] == 1:
            # One window and batch 1: BatchNorm cannot estimate batch statistics from a single
            # value, so use (without updating) the running ones instead of failing.
            norm = self.channel_norm
            y = F.batch_norm(
                y,
                norm.running_mean,
                norm.running_var,
                norm.weight,
                norm.bias,
                training=False,
                eps=norm.eps,
            )
        else:
            y = self.channel_norm(y)
        return self.channel_expand(F.gelu(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        ws = self.window
        x, pad_h, pad_w = pad_to_multiple(x.permute(0, 3, 1, 2), ws)
        x = x.permute(0, 2, 3, 1)  # (B, Hp, Wp, C)
        hp, wp = h + pad_h, w + pad_w
        nh, nw = hp // ws, wp // ws
        valid = None
        if pad_h or pad_w:
            valid = torch.zeros(1, 1, hp, wp, dtype=x.dtype, device=x.device)
            valid[..., :h, :w] = 1.0

        x_attn = self.proj_attn_norm(self.proj_attn(x))  # (B, Hp, Wp, C/2)
        x_cnn = self.proj_cnn_norm(self.proj_cnn(x)).permute(0, 3, 1, 2)  # (B, C, Hp, Wp)
        if valid is not None:
            x_cnn = x_cnn * valid  # padded pixels stay zero for the conv
        x_cnn = self.dwconv(x_cnn)

        # channel interaction: mean of the conv features over the real pixels of each window
        if valid is None:
            pooled = F.avg_pool2d(x_cnn, ws)
        else:
            pooled = F.avg_pool2d(x_cnn * valid, ws) / F.avg_pool2d(valid, ws)
        channel = torch.sigmoid(self.channel_interaction(pooled))  # (B, C/2, nH, nW)
        channel = channel.permute(0, 2, 3, 1).reshape(b * nh * nw, 1, 1, -1)
        x_cnn = self.projection(x_cnn)  # (B, C/2, Hp, Wp)

        # window attention on C/2 channels
        tokens = window_partition(x_attn, ws)  # (B nW, N, C/2)
        bw, n, c_half = tokens.shape
        qkv = self.qkv(tokens).view(bw, n, 3, self.heads, c_half // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B nW, heads, N, d)
        v = v * channel.view(bw, 1, self.heads, c_half // self.heads).transpose(1, 2)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B nW, heads, N, N)
        bias = self.bias_table[self.bias_index].view(n, n, self.heads).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if valid is not None:
            pad_keys = window_partition(valid.permute(0, 2, 3, 1), ws) == 0  # (nW, N, 1)
            pad_keys = pad_keys.view(1, nh * nw, 1, 1, n).expand(b, -1, -1, -1, -1)
            attn = attn.masked_fill(pad_keys.reshape(bw, 1, 1, n), float("-inf"))
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c_half)
        x_attn = window_merge(out, ws, b, hp, wp)  # (B, Hp, Wp, C/2)

        # spatial interaction: attention output gates the conv branch per pixel
        spatial = torch.sigmoid(self.spatial_interaction(x_attn.permute(0, 3, 1, 2)))
        x_cnn = self.conv_norm(x_cnn * spatial).permute(0, 2, 3, 1)  # (B, Hp, Wp, C/2)

        y = self.proj(torch.cat([self.attn_norm(x_attn), x_cnn], dim=-1))
        return y[:, :h, :w, :]


class MixFormerBlock(nn.Module):
    """x + MixAttn(LN(x)), then x + MLP(LN(x)); (B, C, H, W) -> (B, C, H, W), any H, W."""

    def __init__(self, dim: int, window: int = 8, heads: int = 8, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MixingAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # channels last for LN/linear
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x.permute(0, 3, 1, 2).contiguous()
