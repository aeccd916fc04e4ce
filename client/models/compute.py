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
    """Figures of one forward pass of a single sample, in the model's own dtype and on its device.

    A model built only of torch.nn's own modules (every model rebuilt from a spec) has its MACs counted at each
    call of an nn.Linear or nn.Conv1d/2d/3d, however deeply nested; FLOPs are twice that, as
    torch.utils.flop_counter counts them. That counter itself runs only for a model with code of its own (a
    trainer's nn.Module subclass), whose forward may multiply tensors directly: its first use loads torch's
    compiler stack, seconds that `labclient push` and `compare` would otherwise spend.
    """
    import torch

    tensors = list(model.state_dict().values())
    parameters = sum(p.numel() for p in model.parameters())
    weights_bytes = sum(t.numel() * t.element_size() for t in tensors)
    macs = 0

    def count(layer, inputs, output) -> None:
        nonlocal macs
        if isinstance(layer, torch.nn.Linear):
            macs += output.numel() * layer.in_features
        else:  # each output value sums in_channels / groups x kernel products
            kernel = 1
            for size in layer.kernel_size:
                kernel *= size
            macs += output.numel() * (layer.in_channels // layer.groups) * kernel

    counted = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    hooks = [layer.register_forward_hook(count) for layer in model.modules() if isinstance(layer, counted)]
    floating = next((p for p in model.parameters() if p.is_floating_point()), None)
    sample = torch.zeros(
        1,
        *input_shape,
        dtype=floating.dtype if floating is not None else torch.float32,
        device=floating.device if floating is not None else "cpu",
    )
    was_training = model.training
    model.eval()  # batch norm takes its running statistics, as for any single sample
    try:
        if _only_torch_modules(model):
            with torch.no_grad():
                model(sample)
        else:
            from torch.utils.flop_counter import FlopCounterMode

            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(sample)
            macs = int(counter.get_total_flops()) // 2
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return ComputeFigures(
        parameters=parameters,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        flops_per_sample=2 * macs,
        macs_per_sample=macs,
        bytes_per_parameter=weights_bytes / parameters if parameters else 0.0,
        weights_bytes=weights_bytes,
    )


def _only_torch_modules(model) -> bool:
    """Every module is one of torch.nn's own, so every product it computes is a Linear's or a convolution's."""
    return all(type(module).__module__.startswith("torch.nn.modules.") for module in model.modules())
