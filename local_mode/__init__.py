"""The whole flow on one machine: the emulator and the real function, each in its own process."""
