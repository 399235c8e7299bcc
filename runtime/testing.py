"""What tests (and users' tests) need to drive simulated time and faults."""

from runtime._simloop import SimulatedEventLoop, current_seed, is_simulated
from runtime.cluster._simnet import SimulatedNetwork

__all__ = ["SimulatedEventLoop", "SimulatedNetwork", "current_seed", "is_simulated"]
