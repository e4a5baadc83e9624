"""What the catalog's instance types hold, and how much of it a scaled-to-zero model's copy reserves.

vCPUs, memory, GPUs and each GPU's memory per type are EC2's (the accelerated-computing instance pages:
A10G 24 GiB on g5, L4 24 GiB on g6, A100 40 GiB on p4d and 80 GiB on p4de, H100 80 GiB on p5; SageMaker's
``ml.`` types are the same hardware). An inference component states what one copy needs, and SageMaker places a
copy only on an instance with that much free; a copy here is the whole model on one instance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceHardware:
    vcpus: int
    memory_gib: int
    gpus: int
    #: One GPU's memory.
    gpu_memory_gib: int


INSTANCE_HARDWARE = {
    "ml.g5.xlarge": InstanceHardware(4, 16, 1, 24),
    "ml.g5.2xlarge": InstanceHardware(8, 32, 1, 24),
    "ml.g5.4xlarge": InstanceHardware(16, 64, 1, 24),
    "ml.g5.8xlarge": InstanceHardware(32, 128, 1, 24),
    "ml.g5.12xlarge": InstanceHardware(48, 192, 4, 24),
    "ml.g5.16xlarge": InstanceHardware(64, 256, 1, 24),
    "ml.g5.24xlarge": InstanceHardware(96, 384, 4, 24),
    "ml.g5.48xlarge": InstanceHardware(192, 768, 8, 24),
    "ml.g6.2xlarge": InstanceHardware(8, 32, 1, 24),
    "ml.g6.12xlarge": InstanceHardware(48, 192, 4, 24),
    "ml.p4d.24xlarge": InstanceHardware(96, 1152, 8, 40),
    "ml.p4de.24xlarge": InstanceHardware(96, 1152, 8, 80),
    "ml.p5.48xlarge": InstanceHardware(192, 2048, 8, 80),
}


@dataclass(frozen=True)
class CopyRequirements:
    """``ComputeResourceRequirements`` of an inference component's copy."""

    accelerators: int
    cpu_cores: float
    min_memory_mb: int


def copy_requirements(instance_type: str, gpus: int | None = None) -> CopyRequirements:
    """A copy on ``gpus`` of the instance's GPUs (all by default: the container shards the model over them, as
    its ``SM_NUM_GPUS`` says), with the same share of the rest: a quarter of those vCPUs as cores (TGI's and
    LMI's work is on the GPUs) and half that memory, the rest left to SageMaker's agents and the page cache.
    Our sizing: a first deployment confirms that a copy is placed."""
    hardware = INSTANCE_HARDWARE.get(instance_type)
    if hardware is None:
        raise KeyError(f"no hardware recorded for {instance_type}; allowed: {', '.join(INSTANCE_HARDWARE)}")
    gpus = hardware.gpus if gpus is None else gpus
    return CopyRequirements(accelerators=gpus, cpu_cores=max(1, hardware.vcpus * gpus // hardware.gpus // 4),
                            min_memory_mb=hardware.memory_gib * 1024 * gpus // hardware.gpus // 2)
