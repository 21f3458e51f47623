"""Where things run: the device policy, one place for every choice that depends on the hardware.

    from nuwa_lab.device import resolve_device, attention_backend, autocast_dtype

`resolve_device("auto")` gives the GPU when there is one, else the CPU, and prints once per process
what the policy picks there: the attention path per pattern, the training precision, pinned
memory. The decisions are pure functions of `Available` (what this process can use), so tests can
ask them about a machine they do not have. See `policy` for each decision and why.
"""

from nuwa_lab.device.policy import (
    AUTO_MASKED_PAIRS,
    FLEX_MIN_HEAD_WIDTH,
    Available,
    announce,
    attention_backend,
    autocast_dtype,
    available,
    compiled_flex_usable,
    flex_status,
    local_rank,
    pick_device,
    pin_memory,
    print_once,
    process_group_backend,
    resolve_device,
    summary,
)

__all__ = [
    "AUTO_MASKED_PAIRS",
    "FLEX_MIN_HEAD_WIDTH",
    "Available",
    "announce",
    "attention_backend",
    "autocast_dtype",
    "available",
    "compiled_flex_usable",
    "flex_status",
    "local_rank",
    "pick_device",
    "pin_memory",
    "print_once",
    "process_group_backend",
    "resolve_device",
    "summary",
]
