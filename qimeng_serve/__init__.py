"""qimeng-serve: attention kernels for any NVIDIA GPU through the Thinking-Language workflow."""

__version__ = "0.1.0"
