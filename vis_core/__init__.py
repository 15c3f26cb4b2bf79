"""vis_core: what every video instance segmentation project of this collection shares.

Subpackages: ``config`` (shared config keys), ``data`` (YTVIS/OVIS loading, registration, the video
mapper, synthvis), ``evaluation`` (temporal mAP as the official YouTube-VIS API), ``matching``
(Hungarian and QAP matchers), ``layers`` (compiled ops and their PyTorch twins), ``modeling``,
``inference`` and ``engine`` (VideoTrainer).
"""

__version__ = "0.1.0"
