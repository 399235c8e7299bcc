"""What tests (and users' tests) need to drive simulated time and faults."""

from runtime._simloop import SimulatedEventLoop, current_seed, is_simulated

__all__ = ["SimulatedEventLoop", "current_seed", "is_simulated"]
