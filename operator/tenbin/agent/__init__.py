"""The NVML node agent (`tenbin agent`): GPU model, memory, MIG and health published on the Node."""
