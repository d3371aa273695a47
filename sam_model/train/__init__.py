"""Training and evaluation of SAM models: generated scenes, the SAM losses,
simulated interactive prompts, a resumable training loop, user data and
evaluation. Used to train the embedded ``sam_tiny`` model and to fine-tune any
model on a user's labelled images (``napari-sam train`` / ``evaluate``).

Imports torch, numpy, scipy and scikit-image only.
"""
