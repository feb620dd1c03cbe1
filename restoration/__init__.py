"""The core of pix2pix-sr, shared by the TorchServe workers, the bot, training and the command line.

It imports neither TorchServe, aiogram nor the training loops: the networks (``networks``), Lab
colour (``color``), image decoding, limits and encoding (``image_io``, ``png``), tiling and
row-parallel helpers (``tiling``, ``parallel``), and the names every part relies on (``names``).
"""
