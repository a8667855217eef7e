"""Exponential moving average of a network's weights (optional in the engine)."""

from __future__ import annotations

import torch


class WeightAverage:
    """``avg = decay * avg + (1 - decay) * w`` after every optimiser step.

    Floating-point parameters and buffers are averaged; integer buffers (batch-norm counters)
    are copied. The average lives on the network's device, in float32.
    """

    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in network.state_dict().items()}

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        for name, value in network.state_dict().items():
            avg = self.shadow[name]
            if value.dtype.is_floating_point:
                avg.mul_(self.decay).add_(value.detach().float(), alpha=1.0 - self.decay)
            else:
                avg.copy_(value)

    def averaged_state(self, network: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The averaged weights in the network's own dtypes (a state dict for it)."""
        own = network.state_dict()
        return {k: v.to(own[k].dtype) for k, v in self.shadow.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self.shadow[name].copy_(value)
