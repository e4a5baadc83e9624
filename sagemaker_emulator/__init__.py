"""A local emulator of the SageMaker runtime's ``InvokeEndpointWithResponseStream`` in front of TGI."""

from .faults import FAULT_KINDS, Fault
from .server import EmulatorConfig, EmulatorServer, HostedComponent, ReceivedRequest

__all__ = ["FAULT_KINDS", "EmulatorConfig", "EmulatorServer", "Fault", "HostedComponent", "ReceivedRequest"]
