"""Velocity (and score) networks: MLPs of the state and a time embedding."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = {"silu": nn.SiLU, "selu": nn.SELU, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class TimeEmbedding(nn.Module):
    """Sinusoidal features of time, ``[t, sin(w_j t), cos(w_j t)]``, ``w_j = pi 2^j / 32``.

    Times are standardised to about ``[0, 1]`` before they reach the network, so the
    frequencies run from pi/32 (a slow trend) to pi 2^(n_freq - 5) (4 pi for 8 frequencies).

    Parameters
    ----------
    n_freq : int
        Number of frequencies; the embedding has ``1 + 2 * n_freq`` features.
    """

    def __init__(self, n_freq: int = 8) -> None:
        super().__init__()
        freqs = math.pi * 2.0 ** torch.arange(n_freq, dtype=torch.float64) / 32.0
        self.register_buffer("freqs", freqs.float(), persistent=False)
        self.dim = 1 + 2 * n_freq

    def forward(self, t: Tensor) -> Tensor:
        """``t (batch,)`` -> ``(batch, 1 + 2 n_freq)``."""
        angles = t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([t[:, None], torch.sin(angles), torch.cos(angles)], dim=-1)


class VelocityField(nn.Module):
    """MLP velocity field ``v(x, t)`` of a ``dim``-dimensional state.

    Parameters
    ----------
    dim : int
        State dimension ``d``.
    width, depth : int
        Hidden width and number of hidden layers.
    activation : str
        One of ``silu``, ``selu``, ``relu``, ``tanh``, ``gelu``.
    time_features : int
        Frequencies of the sinusoidal time embedding.
    """

    def __init__(
        self,
        dim: int,
        *,
        width: int = 128,
        depth: int = 3,
        activation: str = "silu",
        time_features: int = 8,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation {activation!r} is unknown; use one of {list(ACTIVATIONS)}"
            )
        self.dim = dim
        self.embed = TimeEmbedding(time_features)
        layers: list[nn.Module] = []
        width_in = dim + self.embed.dim
        for _ in range(depth):
            layers += [nn.Linear(width_in, width), ACTIVATIONS[activation]()]
            width_in = width
        layers.append(nn.Linear(width_in, dim))
        self.mlp = nn.Sequential(*layers)
        if generator is not None:
            self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default ``Linear`` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        drawn from ``generator`` rather than the global RNG (so that runs trained in
        parallel threads stay reproducible)."""
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                for p in (layer.weight, layer.bias):
                    p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Velocity at states ``x (batch, d)`` and times ``t`` (``(batch,)`` or scalar)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.mlp(torch.cat([x, self.embed(t)], dim=-1))

    def as_ode(self):
        """The field as ``f(t, x)`` in the solver's argument order."""

        def field(t: Tensor, x: Tensor) -> Tensor:
            return self(x, t)

        return field
