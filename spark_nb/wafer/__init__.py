"""The emulated wafer: hardware spec, placement of weights onto PE tiles, numba kernels, cycle model."""
