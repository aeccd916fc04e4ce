"""Compute figures: parameters, MACs and FLOPs per sample, training FLOPs, bytes and file size."""

from __future__ import annotations

from dataclasses import dataclass

# a backward pass costs about twice the forward pass, so one training step is about 3x forward FLOPs
TRAINING_FLOPS_PER_FORWARD = 3


@dataclass
class ComputeFigures:
    parameters: int
    trainable_parameters: int
    flops_per_sample: int
    macs_per_sample: int
    bytes_per_parameter: float
    weights_bytes: int  # raw tensor bytes: what the weight file must at least hold

    def training_flops(self, samples_seen: int) -> int:
        return TRAINING_FLOPS_PER_FORWARD * self.flops_per_sample * samples_seen


def measure(model, input_shape: tuple[int, ...]) -> ComputeFigures:
    """Counts FLOPs of one forward pass of a single sample with torch's own FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    tensors = list(model.state_dict().values())
    parameters = sum(p.numel() for p in model.parameters())
    weights_bytes = sum(t.numel() * t.element_size() for t in tensors)
    device = next(model.parameters()).device if parameters else torch.device("cpu")
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    flops = int(counter.get_total_flops())
    return ComputeFigures(
        parameters=parameters,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        flops_per_sample=flops,
        macs_per_sample=flops // 2,
        bytes_per_parameter=weights_bytes / parameters if parameters else 0.0,
        weights_bytes=weights_bytes,
    )
