"""Data stage (envs/data.yaml): the C-NMC archive, the image inventory, the splits and the image cache."""
